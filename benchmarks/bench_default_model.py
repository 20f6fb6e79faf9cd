"""Benchmark: default-model training throughput (tokens/s) of the recipe's settings against baselines.

One run measures, on the ``default`` architecture with random tokens, a few optimiser steps each of
(a) the recipe's precision on this machine (``effective_precision``: bf16 autocast where the
hardware computes bf16 natively, else fp32) with the recipe's thread count (what ``train`` uses),
(b) the other precision with the same threads (baseline 1) and (c) the recipe's precision with
torch's default thread count (baseline 2), and prints the ratios. Absolute numbers depend on how busy the machine is; the ratios are the result.
``--shape`` (benchmarks/shapes.py) runs the same three settings on a random-init model of a paper
shape (fp32 weights, as DPO's full fine-tuning keeps them) with that shape's vocabulary.
Run: ``.venv/bin/python benchmarks/bench_default_model.py [--shape mgpt]``.
"""
from __future__ import annotations

import time

import torch

from interp.default_model.build import _threads
from interp.default_model.recipe import RECIPES
from interp.default_model.train import _autocast, make_model


class _Vocab:
    """Stands in for a tokenizer: only the sizes and special ids matter here."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.bos_token_id = self.eos_token_id = 0
        self.pad_token_id = 1

    def __len__(self) -> int:
        return self.n


def tokens_per_s(bf16: bool, threads: int, steps: int = 4, shape: str | None = None, dtype: str = "fp32") -> float:
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

        model = build(shape, dtype=dtype, tokenizer=False)[0].train()
        vocab, bsz, ctx = model.config.vocab_size, 2, 64
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab, (bsz, ctx + 1), generator=torch.Generator().manual_seed(0))
    with _threads(threads):
        t0 = 0.0
        for i in range(steps + 1):
            if i == 1:
                t0 = time.perf_counter()
            with _autocast("cpu", "bf16" if bf16 else "fp32"):  # the training loop's own switch
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
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shapes import SHAPES

    ap.add_argument("--shape", default=None, choices=list(SHAPES),
                    help="a paper shape from benchmarks/shapes.py (default: the embedded default model)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                    help="weights of a --shape model (default fp32, as full fine-tuning keeps them)")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    from interp.default_model.recipe import effective_precision, native_bf16

    threads = RECIPES["standard"].num_threads or torch.get_num_threads()
    bf16 = effective_precision(RECIPES["standard"], "cpu") == "bf16"
    ours = tokens_per_s(bf16, threads, args.steps, args.shape, args.dtype)
    other = tokens_per_s(not bf16, threads, args.steps, args.shape, args.dtype)
    default_threads = tokens_per_s(bf16, 0, args.steps, args.shape, args.dtype)
    print(f"native bf16: {native_bf16('cpu')}; recipe precision here: {'bf16' if bf16 else 'fp32'}")
    out = {"threads": float(threads), "recipe_tok_s": ours, "other_precision_tok_s": other,
           "recipe_default_threads_tok_s": default_threads, "recipe_over_other_precision": ours / other,
           "recipe_threads_over_default_threads": ours / default_threads}
    print(" ".join(f"{k}={v:.2f}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
