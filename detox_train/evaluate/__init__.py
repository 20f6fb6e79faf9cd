"""Multilingual evaluation: sampling (``generate``), toxicity scorers (``get_scorer``) with a
SQLite cache, scoring (``score``; ``score_samples`` file to file) and per-language metrics/tables.
In memory first: ``generate``/``score`` return rows; ``out_path=`` adds the resumable JSONL.

Imports no TRL: the DPO side and the evaluation side load independently.
"""
from __future__ import annotations

from .generation import GenerationSettings, Sample, generate, read_samples, row_seed
from .metrics import (METRIC_COLUMNS, Judge, compare_tables, conditional_perplexity, continuation_nll, distinct_n,
                      language_metrics, repeat_rate, toxicity_summary, write_table)
from .scorers import (SCORER_NAMES, CachedScorer, ScoreCache, ScoreCacheError, Scorer, ScoreResult, get_scorer,
                      scorer_key)
from .scoring import ScoredSample, read_scored, score, score_samples

__all__ = [
    "generate", "Sample", "GenerationSettings", "read_samples", "row_seed",
    "Scorer", "ScoreResult", "ScoreCache", "ScoreCacheError", "CachedScorer", "get_scorer", "scorer_key",
    "SCORER_NAMES", "score", "score_samples", "ScoredSample", "read_scored",
    "language_metrics", "compare_tables", "write_table", "Judge", "conditional_perplexity", "continuation_nll",
    "distinct_n", "repeat_rate", "toxicity_summary", "METRIC_COLUMNS",
]
