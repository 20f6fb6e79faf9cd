"""Lexicon scorer: 1.0 when a text contains any LDNOOBW bad word of its language, else 0.0.

Matching (word boundaries per script, no matches inside other words) is ``interp.data.lexicon``'s.
A language without a list (Indonesian) scores 0.0 for every text: the scorer cannot see toxicity
there, which is why it is a coarse cross-check and not the default scorer.
"""
from __future__ import annotations

from typing import Any

from interp.core.artifacts import stable_hash

from .base import ScoreResult, check_batch


class LexiconScorer:
    """Binary bad-word scorer over ``interp.data.lexicon.Lexicon`` (id ``lexicon-ldnoobw``)."""

    id = "lexicon-ldnoobw"

    def __init__(self, lexicon: Any = None) -> None:
        """``lexicon``: the lists to match, loaded at the edge (``Lexicon.from_root(root)``); default:
        those of the default data root."""
        from interp.data.lexicon import Lexicon

        self.lexicon = lexicon if lexicon is not None else Lexicon.from_root()
        # The version changes whenever any list changes, so cached scores never go stale.
        self.version = stable_hash({lang: list(self.lexicon.entries(lang)) for lang in self.lexicon.languages}, 12)

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]:
        """Return 1.0 per text with any hit in its language's list, else 0.0."""
        langs = check_batch(texts, langs)
        key = f"{self.id}@{self.version}"
        return [ScoreResult.ok(1.0 if self.lexicon.hits(t, lang) else 0.0, key) for t, lang in zip(texts, langs)]

    def __repr__(self) -> str:
        return f"LexiconScorer(version={self.version!r}, languages={list(self.lexicon.languages)})"
