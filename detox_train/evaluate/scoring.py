"""Score a samples JSONL with any scorer into a scored JSONL: batched, cached, resumable and
kill -9 safe (each batch is appended+fsynced; a rerun skips rows already scored)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.artifacts import JsonlAppender, file_sha256, make_manifest, read_jsonl, write_json, write_jsonl
from interp.languages import normalize_language

from .generation import read_samples, refuse_repeated_row
from .scorers import CachedScorer, ScoreCache, Scorer, scorer_key


@dataclass(frozen=True)
class ScoredSample:
    """One sample with its toxicity score (``score`` is None when ``failed``)."""

    prompt_id: str
    lang: str
    sample_index: int
    text: str
    n_tokens: int
    score: float | None
    failed: bool
    error: str | None
    scorer: str
    truncated: bool = False


def read_scored(path: str | os.PathLike[str]) -> list[ScoredSample]:
    """Return the scored samples of a JSONL written by :func:`score_samples`."""
    import math

    from interp.artifacts import InputError, numbered_jsonl

    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(f"{path}: no scored samples; write them with `xdetox eval score --out {path}`")
    names = [f.name for f in dataclasses.fields(ScoredSample)]
    out = []
    seen: dict[tuple[Any, Any], int] = {}
    for n, r in numbered_jsonl(path):
        where = f"{path}:{n}"
        missing = [k for k in names[:9] if k not in r]
        if missing:
            raise InputError(f"{where}: missing field(s) {missing}; not a scored-samples file (xdetox eval score)")
        r = {k: r.get(k, False) for k in names}
        r["lang"] = normalize_language(r["lang"], where=f"{where} field 'lang'")
        score, failed = r["score"], r["failed"]
        if not isinstance(failed, bool):
            raise InputError(f"{where}: field 'failed' must be true/false, got {failed!r}")
        if not failed:
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                raise InputError(f"{where}: field 'score' must be a number in [0, 1] (or the row marked failed), "
                                 f"got {score!r}; rescore the samples with xdetox eval score")
            if not 0.0 <= score <= 1.0:
                raise InputError(f"{where}: field 'score' {score!r} is outside [0, 1]; toxicity scores are "
                                 "probabilities: rescore the samples with xdetox eval score")
        if not isinstance(r["text"], str):
            raise InputError(f"{where}: field 'text' must be a string, got {r['text']!r}")
        refuse_repeated_row(seen, (r["prompt_id"], r["sample_index"]), where, n, "scored row")
        out.append(ScoredSample(**r))
    if not out:
        raise InputError(f"{path}: the scored-samples file is empty; score samples first (xdetox eval score)")
    return out


def score_samples(samples_path: str | os.PathLike[str], scorer: Scorer, out_path: str | os.PathLike[str], *,
                  cache: ScoreCache | str | os.PathLike[str] | None = None, batch_size: int = 64,
                  progress: bool = True) -> list[ScoredSample]:
    """Return every sample of ``samples_path`` scored by ``scorer``, appended to ``out_path``.

    Rows already in ``out_path`` are kept as they are, failed ones included, but only for the very
    text they scored (keyed by prompt id, sample index *and* text): a row for another text under
    the same key is scored again. A cache makes repeated texts free. On return ``out_path`` holds
    exactly the returned rows, in the input's order (stale or extra rows are dropped).
    """
    from tqdm.auto import tqdm

    samples = read_samples(samples_path)
    out_path = Path(out_path)
    key = scorer_key(scorer)
    if isinstance(cache, (str, os.PathLike)):
        cache = ScoreCache(cache)
    run = CachedScorer(scorer, cache) if cache is not None else scorer
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    texts = {(s.prompt_id, s.sample_index): s.text for s in samples}
    with JsonlAppender(out_path) as app:
        done: dict[tuple[str, int], dict[str, Any]] = {}
        in_file: list[tuple[str, int]] = []
        for r in app.records():
            if r.get("scorer") != key:
                raise ValueError(f"{out_path}: holds scores by {r.get('scorer')!r}, not {key!r}; "
                                 "use another --out file for another scorer")
            k = (r["prompt_id"], int(r["sample_index"]))
            in_file.append(k)
            if k in texts and r.get("text") == texts[k]:  # a score belongs to its text, not to its slot
                done.setdefault(k, r)
        # Only a resume that was accepted (above) may replace the manifest of the scores it extends.
        write_json(out_path.with_name(out_path.name + ".manifest.json"), make_manifest(
            kind="eval-scores", config={"scorer": key, "batch_size": batch_size},
            inputs={"samples": str(samples_path), "samples_sha256": file_sha256(samples_path)},
            extra={"n_samples": len(samples)}))
        todo = [s for s in samples if (s.prompt_id, s.sample_index) not in done]
        bar = tqdm(total=len(todo), desc=f"score {scorer.id}", unit="text", disable=not progress or not todo)
        # Network scorers answer one text per request: save and show progress per request round.
        step = max(1, min(batch_size, int(getattr(scorer, "max_batch", batch_size) or batch_size)))
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            results = run.score([s.text for s in batch], [s.lang for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"scorer {key} returned {len(results)} results for {len(batch)} texts")
            rows = [dataclasses.asdict(ScoredSample(s.prompt_id, s.lang, s.sample_index, s.text, s.n_tokens,
                                                    r.score, r.failed, r.error, r.scorer, r.truncated))
                    for s, r in zip(batch, results)]
            app.write_many(rows)
            for row in rows:
                done[(row["prompt_id"], row["sample_index"])] = row
                in_file.append((row["prompt_id"], row["sample_index"]))
            bar.update(len(batch))
        bar.close()
    order = [(s.prompt_id, s.sample_index) for s in samples]
    if in_file != order:  # stale rows (other texts or samples) or another order: rewrite exactly this set
        write_jsonl(out_path, [done[k] for k in order])
    return [ScoredSample(**done[k]) for k in order]
