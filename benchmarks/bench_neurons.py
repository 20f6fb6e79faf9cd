"""Benchmark: toxic-neuron activation collection and the cosine ranking, as ratios in this one run.

1. ``collect_generation_activations`` over 20 greedy tokens (KV cache, batched, left padding)
   against (a) the reference algorithm (full forward without cache for every step, one prompt at
   a time, activations read through a bridge hook) and (b) a bare HF greedy ``generate`` with KV
   cache and the same batch size, on the same bridge's HF model and on a plain unwrapped copy of
   the same weights. Goals: >= 10x the reference, <= 1.3x bare ``generate``. Rounds are
   interleaved and the best of each is kept, so load from other processes hits all alike.
2. ``rank_value_vectors`` over mGPT-sized random value vectors (24 x 8192 x 2048, fp32) on CPU.
   Goal: < 2 s.

``--shape`` (benchmarks/shapes.py) runs both at a paper model's shape: collection on the random-init
model, ranking over *its* value vectors; the reference algorithm runs at ``tiny`` only (it is
~n_new times slower). The bare baseline is an unwrapped view sharing the same weights (no copy).
Run: ``.venv/bin/python benchmarks/bench_neurons.py [--shape mgpt] [--threads N] [--device cuda]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from shapes import add_shape_arg, bare_view, build  # noqa: E402


def _best(fn, rounds: list[float]) -> None:
    t = time.perf_counter()
    fn()
    rounds.append(time.perf_counter() - t)


def bench_collection(n_prompts: int, n_new: int, batch: int, device: str, rounds: int, shape: str = "tiny",
                     dtype: str = "auto") -> dict[str, float]:
    from interp.neurons.activations import collect_generation_activations, encode_prompts
    from interp.model.architecture import get_adapter
    from interp.model.loading import wrap_bridge
    from tiny_models import TINY_TEXT

    hf, tok = build(shape, device=device, dtype=dtype)
    bare = bare_view(hf)  # unwrapped modules, the same weights: no bridge components in its forward
    bridge = wrap_bridge(hf, tok)
    a = get_adapter(bridge)
    prompts = [TINY_TEXT[i % len(TINY_TEXT)] + (" again" * (i % 4)) for i in range(n_prompts)]
    g = torch.Generator().manual_seed(0)
    neurons = [(int(l), int(i)) for l, i in zip(torch.randint(0, a.n_layers, (100,), generator=g),
                                                torch.randint(0, a.d_mlp, (100,), generator=g))]
    ids = encode_prompts(bridge, prompts)

    def ours() -> None:
        collect_generation_activations(bridge, prompts, neurons, n_new_tokens=n_new, batch_size=batch)

    names = sorted({a.hook_name(l) for l, _ in neurons})

    def reference() -> None:
        for seq0 in ids:
            seq = list(seq0)
            for _ in range(n_new):
                with torch.no_grad():
                    logits, cache = bridge.run_with_cache(torch.tensor([seq], device=device), names_filter=names)
                _ = [cache[a.hook_name(l)][0, -1, i].item() for l, i in neurons]
                seq.append(int(logits[0, -1].argmax()))

    def generate(model) -> None:
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for s in range(0, len(order), batch):
            seqs = [ids[i] for i in order[s:s + batch]]
            w = max(map(len, seqs))
            x = torch.tensor([[1] * (w - len(q)) + q for q in seqs], device=device)
            m = torch.tensor([[0] * (w - len(q)) + [1] * len(q) for q in seqs], device=device)
            with torch.no_grad():
                model.generate(input_ids=x, attention_mask=m, max_new_tokens=n_new, do_sample=False,
                               min_new_tokens=n_new, pad_token_id=1)

    times: dict[str, list[float]] = {"ours": [], "generate_same_model": [], "generate_bare_copy": [], "reference": []}
    ours()  # warm-up
    for r in range(rounds):
        _best(ours, times["ours"])
        _best(lambda: generate(hf), times["generate_same_model"])
        _best(lambda: generate(bare), times["generate_bare_copy"])
        if r == 0 and shape == "tiny":  # the slow algorithm: one round is plenty
            _best(reference, times["reference"])
    best = {k: min(v) for k, v in times.items() if v}
    ref = {"speedup_vs_reference": round(best["reference"] / best["ours"], 2)} if "reference" in best else {}
    global _LAST_BRIDGE
    _LAST_BRIDGE = bridge
    return {"shape": shape, **{f"{k}_s": round(v, 4) for k, v in best.items()}, **ref,
            "ratio_vs_generate_same_model": round(best["ours"] / best["generate_same_model"], 3),
            "ratio_vs_generate_bare_copy": round(best["ours"] / best["generate_bare_copy"], 3)}


_LAST_BRIDGE = None


def bench_ranking(rounds: int, model=None) -> dict[str, float]:
    """Rank mGPT-sized random value vectors, or, given ``model``, all of that model's value vectors."""
    from interp.model.architecture import get_adapter
    from interp.neurons.ranking import rank_value_vectors

    g = torch.Generator().manual_seed(0)
    if model is not None:
        V = get_adapter(model).value_vectors()
        w = torch.randn(V.shape[-1], generator=g).to(V.device)
    else:
        V = torch.randn(24, 8192, 2048, generator=g)
        w = torch.randn(2048, generator=g)
    rank_value_vectors(V, w, 100)
    ts = []
    for _ in range(rounds):
        _best(lambda: rank_value_vectors(V, w, 100), ts)
    n_l, d_mlp, d = V.shape
    return {f"ranking_{n_l}x{d_mlp}x{d}_s": round(min(ts), 3), "goal_s": 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-ranking", action="store_true")
    add_shape_arg(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"threads": torch.get_num_threads(), "device": args.device,
           "collection": bench_collection(args.prompts, args.new_tokens, args.batch_size, args.device, args.rounds,
                                          args.shape, args.dtype)}
    if not args.skip_ranking:
        out["ranking"] = bench_ranking(args.rounds, None if args.shape == "tiny" else _LAST_BRIDGE)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
