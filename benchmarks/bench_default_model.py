"""Benchmark: default-model training throughput (tokens/s) of the recipe's settings against baselines.

One run measures, on the ``default`` architecture with random tokens, a few optimiser steps each of
(a) bf16 autocast with the recipe's thread count (what ``train`` uses), (b) fp32 with the same
threads (baseline 1) and (c) bf16 with torch's default thread count (baseline 2), and prints the
ratios. Absolute numbers depend on how busy the machine is; the ratios are the result.
``--shape`` (benchmarks/shapes.py) runs the same three settings on a random-init model of a paper
shape (fp32 weights, as DPO's full fine-tuning keeps them) with that shape's vocabulary.
Run: ``.venv/bin/python benchmarks/bench_default_model.py [--shape mgpt]``.
"""
from __future__ import annotations

import contextlib
import time

import torch

from interp.default_model.build import _threads
from interp.default_model.recipe import RECIPES
from interp.default_model.train import make_model


class _Vocab:
    """Stands in for a tokenizer: only the sizes and special ids matter here."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.bos_token_id = self.eos_token_id = 0
        self.pad_token_id = 1

    def __len__(self) -> int:
        return self.n


def tokens_per_s(bf16: bool, threads: int, steps: int = 4, shape: str | None = None) -> float:
    """Return training tokens/s of the default architecture (or ``shape``) for ``steps`` steps (after one warm-up)."""
    r = RECIPES["standard"]
    if shape is None:
        model = make_model(r, _Vocab(r.vocab_size)).train()
        vocab, bsz, ctx = r.vocab_size, r.batch_size, r.ctx
    else:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from shapes import build

        model = build(shape, dtype="fp32", tokenizer=False)[0].train()
        vocab, bsz, ctx = model.config.vocab_size, 2, 64
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab, (bsz, ctx + 1), generator=torch.Generator().manual_seed(0))
    with _threads(threads):
        t0 = 0.0
        for i in range(steps + 1):
            if i == 1:
                t0 = time.perf_counter()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps * bsz * ctx / (time.perf_counter() - t0)


def main() -> dict[str, float]:
    """Return tokens/s of the recipe setting and both baselines, with the ratios."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default=None, help="a paper shape from benchmarks/shapes.py (default: the default model)")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    threads = RECIPES["standard"].num_threads or torch.get_num_threads()
    ours = tokens_per_s(True, threads, args.steps, args.shape)
    fp32 = tokens_per_s(False, threads, args.steps, args.shape)
    default_threads = tokens_per_s(True, 0, args.steps, args.shape)
    out = {"threads": float(threads), "bf16_tok_s": ours, "fp32_tok_s": fp32,
           "bf16_default_threads_tok_s": default_threads, "bf16_over_fp32": ours / fp32,
           "recipe_threads_over_default_threads": ours / default_threads}
    print(" ".join(f"{k}={v:.2f}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
