"""Score samples with any scorer: :func:`score` in memory (batched, cached), optionally streamed to a
scored JSONL that is resumable and kill -9 safe (each batch is appended+fsynced; a rerun skips
rows already scored). :func:`score_samples` is the file-to-file wrapper the CLI and pipeline use."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from interp.core.artifacts import (JsonlAppender, file_sha256, make_manifest, stable_hash, write_json,
                              write_jsonl)
from interp.data.languages import normalize_language

from .generation import Sample, read_samples, refuse_repeated_row
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
    prompt_sha: str = ""  # the scored sample's prompt text hash (see :class:`Sample`)


def read_scored(path: str | os.PathLike[str]) -> list[ScoredSample]:
    """Return the scored samples of a JSONL written by :func:`score_samples`."""
    import math

    from interp.core.artifacts import InputError, numbered_jsonl

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
        r = {k: r.get(k, "" if k == "prompt_sha" else False) for k in names}
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


def _score_batches(samples: list[Any], run: Any, key: str, step: int, progress: bool, desc: str
                   ) -> Iterator[list[ScoredSample]]:
    """Yield ``samples`` scored by ``run`` in batches of ``step`` (the one row implementation)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(samples), desc=desc, unit="text", disable=not progress or not samples)
    for start in range(0, len(samples), step):
        batch = samples[start:start + step]
        results = run.score([s.text for s in batch], [s.lang for s in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"scorer {key} returned {len(results)} results for {len(batch)} texts")
        yield [ScoredSample(s.prompt_id, s.lang, s.sample_index, s.text, s.n_tokens, r.score, r.failed, r.error,
                            r.scorer, r.truncated, getattr(s, "prompt_sha", "") or "") for s, r in zip(batch, results)]
        bar.update(len(batch))
    bar.close()


def score(samples: Sequence[Sample], scorer: Scorer, *, cache: ScoreCache | str | os.PathLike[str] | None = None,
          batch_size: int = 64, progress: bool = True, out_path: str | os.PathLike[str] | None = None,
          inputs: dict[str, Any] | None = None) -> list[ScoredSample]:
    """Return ``samples`` scored by ``scorer``, in their order (a cache makes repeated texts free).

    Without ``out_path`` everything stays in memory. With it, the rows are also appended to that
    JSONL and a rerun resumes: rows already there are kept as they are, failed ones included, but
    only for the very text they scored (keyed by prompt id, sample index *and* text); a row for
    another text under the same key is scored again. On return ``out_path`` holds exactly the
    returned rows (stale or extra rows are dropped). ``inputs`` goes into its manifest (default:
    a hash of the samples).
    """
    samples = list(samples)
    seen: set[tuple[str, int]] = set()
    for s in samples:
        if (s.prompt_id, s.sample_index) in seen:
            raise ValueError(f"duplicate sample (prompt_id {s.prompt_id!r}, sample_index {s.sample_index}); "
                             "each sample must appear once")
        seen.add((s.prompt_id, s.sample_index))
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    key = scorer_key(scorer)
    if isinstance(cache, (str, os.PathLike)):
        cache = ScoreCache(cache)
    run = CachedScorer(scorer, cache) if cache is not None else scorer
    # Network scorers answer one text per request: save and show progress per request round.
    step = max(1, min(batch_size, int(getattr(scorer, "max_batch", batch_size) or batch_size)))
    how = (run, key, step, progress, f"score {scorer.id}")
    if out_path is None:
        return [x for new in _score_batches(samples, *how) for x in new]
    out_path = Path(out_path)
    texts = {(s.prompt_id, s.sample_index): s.text for s in samples}
    with JsonlAppender(out_path) as app:
        done: dict[tuple[str, int], ScoredSample] = {}
        in_file: list[tuple[str, int]] = []
        for r in app.records():
            if r.get("scorer") != key:
                raise ValueError(f"{out_path}: holds scores by {r.get('scorer')!r}, not {key!r}; "
                                 "use another --out file for another scorer")
            k = (r["prompt_id"], int(r["sample_index"]))
            in_file.append(k)
            if k in texts and r.get("text") == texts[k]:  # a score belongs to its text, not to its slot
                done.setdefault(k, ScoredSample(**{f: r[f] for f in ScoredSample.__dataclass_fields__ if f in r}))
        # Only a resume that was accepted (above) may replace the manifest of the scores it extends.
        write_json(out_path.with_name(out_path.name + ".manifest.json"), make_manifest(
            kind="eval-scores", config={"scorer": key, "batch_size": batch_size},
            inputs=inputs or {"samples_sha256": stable_hash([dataclasses.asdict(s) for s in samples], 64)},
            extra={"n_samples": len(samples)}))
        todo = [s for s in samples if (s.prompt_id, s.sample_index) not in done]
        for new in _score_batches(todo, *how):
            app.write_many([dataclasses.asdict(x) for x in new])
            for x in new:
                done[(x.prompt_id, x.sample_index)] = x
                in_file.append((x.prompt_id, x.sample_index))
    order = [(s.prompt_id, s.sample_index) for s in samples]
    if in_file != order:  # stale rows (other texts or samples) or another order: rewrite exactly this set
        write_jsonl(out_path, [dataclasses.asdict(done[k]) for k in order])
    return [done[k] for k in order]


def score_samples(samples_path: str | os.PathLike[str], scorer: Scorer, out_path: str | os.PathLike[str], *,
                  cache: ScoreCache | str | os.PathLike[str] | None = None, batch_size: int = 64,
                  progress: bool = True) -> list[ScoredSample]:
    """Return every sample of the JSONL ``samples_path`` scored by ``scorer`` into ``out_path``
    (:func:`score` with ``out_path``: resumable, keyed by text)."""
    samples = read_samples(samples_path)
    return score(samples, scorer, cache=cache, batch_size=batch_size, progress=progress, out_path=out_path,
                 inputs={"samples": str(samples_path), "samples_sha256": file_sha256(samples_path)})
