"""Score a samples JSONL with any scorer into a scored JSONL: batched, cached, resumable and
kill -9 safe (each batch is appended+fsynced; a rerun skips rows already scored)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.artifacts import JsonlAppender, make_manifest, read_jsonl, write_json
from interp.languages import normalize_language

from .generation import read_samples
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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scored samples; write them with `xdetox eval score --out {path}`")
    names = [f.name for f in dataclasses.fields(ScoredSample)]
    out = []
    for n, r in enumerate(read_jsonl(path), 1):
        missing = [k for k in names[:9] if k not in r]
        if missing:
            raise ValueError(f"{path}:{n}: missing field(s) {missing}; not a scored-samples file")
        r = {k: r.get(k, False) for k in names}
        r["lang"] = normalize_language(r["lang"], where=f"{path}:{n}")
        out.append(ScoredSample(**r))
    return out


def score_samples(samples_path: str | os.PathLike[str], scorer: Scorer, out_path: str | os.PathLike[str], *,
                  cache: ScoreCache | str | os.PathLike[str] | None = None, batch_size: int = 64,
                  progress: bool = True) -> list[ScoredSample]:
    """Return every sample of ``samples_path`` scored by ``scorer``, appended to ``out_path``.

    Rows already in ``out_path`` (keyed by prompt id + sample index) are kept as they are, failed
    ones included; a cache makes repeated texts free. The output follows the input's order.
    """
    from tqdm.auto import tqdm

    samples = read_samples(samples_path)
    out_path = Path(out_path)
    key = scorer_key(scorer)
    if isinstance(cache, (str, os.PathLike)):
        cache = ScoreCache(cache)
    run = CachedScorer(scorer, cache) if cache is not None else scorer
    write_json(out_path.with_name(out_path.name + ".manifest.json"), make_manifest(
        kind="eval-scores", config={"scorer": key, "batch_size": batch_size},
        inputs={"samples": str(samples_path)}, extra={"n_samples": len(samples)}))
    with JsonlAppender(out_path) as app:
        done: dict[tuple[str, int], dict[str, Any]] = {}
        for r in app.records():
            if r.get("scorer") != key:
                raise ValueError(f"{out_path}: holds scores by {r.get('scorer')!r}, not {key!r}; "
                                 "use another --out file for another scorer")
            done.setdefault((r["prompt_id"], int(r["sample_index"])), r)
        todo = [s for s in samples if (s.prompt_id, s.sample_index) not in done]
        bar = tqdm(total=len(todo), desc=f"score {scorer.id}", unit="text", disable=not progress or not todo)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            results = run.score([s.text for s in batch], [s.lang for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"scorer {key} returned {len(results)} results for {len(batch)} texts")
            rows = [dataclasses.asdict(ScoredSample(s.prompt_id, s.lang, s.sample_index, s.text, s.n_tokens,
                                                    r.score, r.failed, r.error, r.scorer, r.truncated))
                    for s, r in zip(batch, results)]
            app.write_many(rows)
            for row in rows:
                done[(row["prompt_id"], row["sample_index"])] = row
            bar.update(len(batch))
        bar.close()
    return [ScoredSample(**done[(s.prompt_id, s.sample_index)]) for s in samples]
