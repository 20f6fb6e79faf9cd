"""The scorer interface: every toxicity scorer returns :class:`ScoreResult` records that carry
the scorer's id and version, and a failed item is marked failed (never silently scored 0)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ScoreResult:
    """One toxicity score in [0, 1], or an explicit failure with its reason."""

    score: float | None
    failed: bool
    error: str | None
    scorer: str  # "<id>@<version>"
    truncated: bool = False  # the text was cut to fit a request limit before scoring

    @classmethod
    def ok(cls, score: float, scorer: str, *, truncated: bool = False) -> "ScoreResult":
        return cls(float(score), False, None, scorer, truncated)

    @classmethod
    def fail(cls, error: str, scorer: str) -> "ScoreResult":
        return cls(None, True, error, scorer)


@runtime_checkable
class Scorer(Protocol):
    """Batch toxicity scorer: ``score(texts, langs)`` returns one result per text, in order."""

    id: str
    version: str

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]: ...


def scorer_key(scorer: Scorer) -> str:
    """Return ``id@version``, the name recorded with every score and used as the cache key."""
    return f"{scorer.id}@{scorer.version}"


def check_batch(texts: list[str], langs: list[str]) -> list[str]:
    """Return normalised language codes, after checking the two lists line up."""
    from interp.data.languages import normalize_language

    if len(texts) != len(langs):
        raise ValueError(f"score(): got {len(texts)} texts but {len(langs)} languages; pass one language per text")
    return [normalize_language(lang, where=f"text #{i}") for i, lang in enumerate(langs)]
