"""Toxicity scorers behind one interface (:class:`Scorer`), a SQLite score cache, and
:func:`get_scorer` by name: ``perspective``, ``e5``, ``hf``, ``lexicon``."""
from __future__ import annotations

from typing import Any

from .base import Scorer, ScoreResult, check_batch, scorer_key
from .cache import CachedScorer, ScoreCache, ScoreCacheError

SCORER_NAMES = ("e5", "lexicon", "perspective", "hf")


def get_scorer(name: str, **kwargs: Any) -> Scorer:
    """Return the scorer called ``name`` built with ``kwargs`` (see each scorer's constructor)."""
    if name == "perspective":
        from .perspective import PerspectiveScorer

        return PerspectiveScorer(**kwargs)
    if name == "e5":
        from .e5 import E5Scorer

        return E5Scorer(**kwargs)
    if name == "hf":
        from .hf import HFClassifierScorer

        if "path" not in kwargs:
            raise ValueError("the hf scorer needs path=<local sequence-classification model dir> (--hf-model DIR)")
        return HFClassifierScorer(**kwargs)
    if name == "lexicon":
        from .lexicon import LexiconScorer

        return LexiconScorer(**kwargs)
    raise ValueError(f"unknown scorer {name!r}; choose one of {', '.join(SCORER_NAMES)}")


__all__ = ["Scorer", "ScoreResult", "ScoreCache", "ScoreCacheError", "CachedScorer", "get_scorer",
           "scorer_key", "check_batch", "SCORER_NAMES"]
