"""Benchmark: evaluation throughput, as ratios measured in this one run.

1. Generation: ``detox_train.evaluate.generate`` (per-row seeded sampler + JSONL streaming) vs
   bare HF ``generate(do_sample=True, num_return_sequences=k)`` with the same model, prompts,
   k, max_new_tokens, temperature and top_p. Goal: tokens/s ratio >= 0.9.
2. Perspective client against the fake server (tests/fake_perspective.py): sustained QPS at a
   configured 20 QPS over ~5 s, goal within 5%; then the same texts through the score cache,
   goal 0 requests.
``--shape`` (benchmarks/shapes.py) generates with a random-init model of a paper shape.
Run: ``.venv/bin/python benchmarks/bench_eval.py [--device cuda] [--shape mgpt]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def bench_generation(device: str, n_prompts: int = 8, k: int = 8, max_new_tokens: int = 20,
                     repeats: int = 3, shape: str | None = None, dtype: str = "auto") -> dict[str, float]:
    """Return tokens/s of ours and of bare HF generate, and their ratio (best of ``repeats``, interleaved)."""
    from tiny_models import TINY_TEXT, make_model, make_tokenizer
    from transformers import GenerationConfig

    from detox_train.evaluate import generate
    from interp.data.records import Prompt

    if shape is None:
        tok = make_tokenizer()
        size = dict(n_layers=4, d_model=256, d_mlp=1024) if device == "cpu" else dict(n_layers=12, d_model=768, d_mlp=3072)
        model = make_model("gpt2", len(tok), **size).to(device)
    else:
        from shapes import build

        model, tok = build(shape, device=device, dtype=dtype)
    prompts = [Prompt(f"b:en:{i}", "en", TINY_TEXT[i % len(TINY_TEXT)], i, None, "bench", i) for i in range(n_prompts)]
    cfg = GenerationConfig(do_sample=True, temperature=0.9, top_p=0.8, top_k=0, max_new_tokens=max_new_tokens,
                           num_return_sequences=k, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    def bare() -> tuple[float, int]:
        tok.padding_side = "left"
        enc = tok([p.text for p in prompts], return_tensors="pt", padding=True).to(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, generation_config=cfg)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1]:]
        return dt, int((new != tok.pad_token_id).sum())

    def ours() -> tuple[float, int]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = generate(model, prompts, tokenizer=tok, k=k, max_new_tokens=max_new_tokens, temperature=0.9,
                         top_p=0.8, out_path=Path(d) / "s.jsonl", batch_size=n_prompts, progress=False)
            dt = time.perf_counter() - t0
        return dt, sum(x.n_tokens for x in s)

    bare(), ours()  # warm-up
    best_b, best_o = 0.0, 0.0
    for _ in range(repeats):
        dt, n = bare()
        best_b = max(best_b, n / dt)
        dt, n = ours()
        best_o = max(best_o, n / dt)
    return {"gen_tokens_per_s_ours": best_o, "gen_tokens_per_s_bare_hf": best_b, "gen_ratio": best_o / best_b}


def bench_perspective(qps: float = 20.0, seconds: float = 5.0) -> dict[str, float]:
    """Return the sustained request rate at ``qps`` and the number of requests a cache hit makes."""
    from fake_perspective import KEY, FakePerspective

    from detox_train.evaluate import CachedScorer, ScoreCache, get_scorer

    os.environ["PERSPECTIVE_API_KEY"] = KEY
    n = int(qps * seconds) + 1
    texts = [f"benchmark text {i}" for i in range(n)]
    with FakePerspective() as srv, tempfile.TemporaryDirectory() as d:
        scorer = CachedScorer(get_scorer("perspective", qps=qps, base_url=srv.url), ScoreCache(Path(d) / "c.sqlite"))
        res = scorer.score(texts, ["en"] * n)
        assert not any(r.failed for r in res)
        rate = (len(srv.times) - 1) / (srv.times[-1] - srv.times[0])
        before = srv.n_requests
        scorer.score(texts, ["en"] * n)
        hit_requests = srv.n_requests - before
    return {"perspective_configured_qps": qps, "perspective_sustained_qps": rate,
            "perspective_qps_error_pct": 100 * abs(rate - qps) / qps, "cache_hit_requests": float(hit_requests)}


def main() -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-perspective", action="store_true")
    from shapes import SHAPES

    ap.add_argument("--shape", default=None, choices=list(SHAPES), help="random-init model of a paper shape")
    ap.add_argument("--dtype", default="auto", help="with --shape: auto (paper policy), fp32 or bf16")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--k", type=int, default=8)
    args = ap.parse_args()
    out = bench_generation(args.device, n_prompts=args.prompts, k=args.k, shape=args.shape, dtype=args.dtype)
    if not args.skip_perspective:
        out.update(bench_perspective())
    for k, v in out.items():
        print(f"{k:32s} {v:10.3f}")
    ok_gen = out["gen_ratio"] >= 0.9
    print(f"generation >= 0.9x bare HF: {'PASS' if ok_gen else 'FAIL'} ({args.device})")
    if "perspective_qps_error_pct" in out:
        print(f"QPS within 5%: {'PASS' if out['perspective_qps_error_pct'] <= 5 else 'FAIL'}; "
              f"cache hit makes 0 requests: {'PASS' if out['cache_hit_requests'] == 0 else 'FAIL'}")
    return out


if __name__ == "__main__":
    main()
