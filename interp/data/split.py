"""Data records and loaders for every offline data set, plus the one hold-out split. (split)."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

from interp.data.records import T200_DIR, Prompt, _root, normalize_text
from interp.data.rtplx import _t200_index_map, load_rtplx, load_translated_200

EVAL_FRACTION = 0.30


_EVAL_SALT = "xdetox-eval"


def is_eval_index(index: int) -> bool:
    """Return whether RTP-LX ``index`` is in the hash-selected evaluation split (~30%)."""
    h = int(hashlib.sha256(f"{_EVAL_SALT}:{int(index)}".encode()).hexdigest()[:8], 16)
    return h < int(EVAL_FRACTION * 2**32)


@lru_cache(maxsize=8)
def _eval_indices_cached(root: str) -> frozenset[int]:
    base = Path(root)
    t200 = base / T200_DIR / "dpo_toxicity_pairwise_en_200.jsonl"
    if not t200.is_file():
        t200 = base / "dpo_toxicity_pairwise_en_200.jsonl"
    return frozenset(_t200_index_map(base, t200 if t200.is_file() else None).values())


def t200_indices(root: str | Path | None = None) -> frozenset[int]:
    """Return the RTP-LX indices of the translated-200 prompts (all evaluation indices)."""
    return _eval_indices_cached(str(_root(root)))


def is_eval_prompt(p: Prompt, *, root: str | Path | None = None) -> bool:
    """Return whether ``p`` is an evaluation prompt (every translated-200 prompt is)."""
    if p.source == "translated200":
        return True
    if p.index is None:
        return False
    return is_eval_index(p.index) or p.index in t200_indices(root)


def rtplx_split(prompts: Iterable[Prompt], split: Literal["eval", "train"], *,
                root: str | Path | None = None) -> list[Prompt]:
    """Return the prompts of ``split``: ``eval`` = evaluation index (hash or translated-200), else ``train``."""
    if split not in ("eval", "train"):
        raise ValueError(f"split must be 'eval' or 'train', got {split!r}")
    want = split == "eval"
    return [p for p in prompts if is_eval_prompt(p, root=root) == want]


def heldout_texts(root: str | Path | None = None) -> set[str]:
    """Return the normalised texts of every evaluation prompt (RTP-LX eval split + translated-200)."""
    out = {normalize_text(p.text) for p in rtplx_split(load_rtplx(root), "eval", root=root)}
    for prompts in load_translated_200(root).values():
        out.update(normalize_text(p.text) for p in prompts)
    return out
