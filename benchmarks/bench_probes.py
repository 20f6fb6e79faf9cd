"""Benchmark: probe feature extraction, as ratios measured in this one run.

1. Throughput (real tokens/s) of ``extract_features`` against a bare HF forward (the full
   CausalLM, a plain unwrapped copy of the same weights) over the *same* length-bucketed
   batches, and against a per-sentence loop (tokenize, forward, mean-pool one text at a time).
   Goals: >= 0.85x the bare forward, >= 5x the per-sentence loop. Rounds are interleaved and
   ratios are paired within a round (median over rounds), so load from other processes hits
   all methods alike.
2. Memory: peak RSS of a fresh subprocess extracting features of 1k vs 10k texts with a tiny
   model (cache off). Goal: growth <= 10%.

Texts are ParaDetox sentences (cycled). Run: ``.venv/bin/python benchmarks/bench_probes.py``
(``--device cuda`` on a GPU machine; ``--threads N`` pins torch's CPU threads; ``--shape mgpt`` etc.
measures throughput on a random-init model of that paper shape, benchmarks/shapes.py, instead of
the default one-block d_model-2048 GPT-2; the bare baseline then shares the model's weights).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# A GPT-2-shaped block as wide as mGPT (d_model 2048): as with real LMs, its weights do not fit
# in cache, so reading them once per batch rather than once per sentence is what batching buys.
N_LAYERS, D_MODEL = 1, 2048
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _texts(n: int) -> list[str]:
    try:
        from interp.data.sources import paradetox_labeled

        base = [r.text for r in paradetox_labeled()]
    except (FileNotFoundError, ValueError):
        from tiny_models import TINY_TEXT

        base = TINY_TEXT
    return [base[i % len(base)] + ("" if i < len(base) else f" {i}") for i in range(n)]


def _bench_model(device: str, n_layers: int = N_LAYERS, d_model: int = D_MODEL):
    from tiny_models import make_model, make_tokenizer

    tok = make_tokenizer(vocab_size=2000)
    hf = make_model("gpt2", len(tok), n_layers=n_layers, d_model=d_model, d_mlp=4 * d_model).to(device)
    return hf, tok


def throughput(n_texts: int = 192, batch_size: int = 32, rounds: int = 3, device: str = "cpu",
               n_layers: int = N_LAYERS, d_model: int = D_MODEL, shape: str | None = None,
               dtype: str = "auto") -> dict[str, float]:
    """Return tokens/s of extraction, bare HF forward and a per-sentence loop, and their ratios."""
    from interp.model.loading import wrap_bridge
    from probes.features import CHUNK_BATCHES, _pad, _tokenize, extract_features
    from shapes import bare_view, build, sync

    if shape is None:
        hf, tok = _bench_model(device, n_layers, d_model)
        plain = copy.deepcopy(hf)  # never wrapped: the bare HF baseline
    else:
        hf, tok = build(shape, device=device, dtype=dtype)
        plain = bare_view(hf)  # never wrapped, sharing the weights: the bare HF baseline
    bridge = wrap_bridge(hf, tok)
    from interp.model.tokenization import token_rule

    rule = token_rule(bridge)  # the run's tokenization rule, as extract_features applies it
    texts = _texts(n_texts)
    # The same batches extract_features builds: chunked, length-sorted, padded.
    batches = []
    n_tokens = 0
    for start in range(0, len(texts), batch_size * CHUNK_BATCHES):
        seqs = _tokenize(rule, texts[start:start + batch_size * CHUNK_BATCHES], max_length=128)
        seqs.sort(key=len)
        n_tokens += sum(len(s) for s in seqs)
        batches += [_pad(seqs[i:i + batch_size], tok.pad_token_id, "right") for i in range(0, len(seqs), batch_size)]
    loop_texts = texts[: max(32, n_texts // 8)]
    loop_tokens = sum(len(s) for s in _tokenize(rule, loop_texts, max_length=128))

    def bare() -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                plain(ids.to(device), attention_mask=mask.to(device))
        sync(device)

    def ours_hf() -> None:
        extract_features(plain, texts, tokenizer=tok, batch_size=batch_size, use_cache=False, progress=False)
        sync(device)

    def ours_bridge() -> None:
        extract_features(bridge, texts, batch_size=batch_size, use_cache=False, progress=False)
        sync(device)

    def per_sentence() -> None:
        with torch.inference_mode():
            for t in loop_texts:
                ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"][:128]], device=device)
                plain.base_model(ids).last_hidden_state.mean(1).cpu()
        sync(device)

    fns = {"bare_hf_forward": (bare, n_tokens), "extract_hf": (ours_hf, n_tokens),
           "extract_bridge": (ours_bridge, n_tokens), "per_sentence_loop": (per_sentence, loop_tokens)}
    for fn, _ in fns.values():  # warm up
        fn()
    # Paired rounds: every method runs once per round (in a rotated order) and ratios are taken
    # within the round, then the median over rounds; this cancels slow drifts in machine load.
    names = list(fns)
    tps_rounds: list[dict[str, float]] = []
    for r in range(rounds):
        tps_r = {}
        for k in names[r % len(names):] + names[:r % len(names)]:
            fn, n_tok = fns[k]
            t0 = time.perf_counter()
            fn()
            tps_r[k] = n_tok / (time.perf_counter() - t0)
        tps_rounds.append(tps_r)
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    out = {f"{k}_tok_s": med([t[k] for t in tps_rounds]) for k in names}
    for ours in ("extract_hf", "extract_bridge"):
        short = ours.removeprefix("extract_")
        out[f"ratio_extract_{short}_vs_bare"] = med([t[ours] / t["bare_hf_forward"] for t in tps_rounds])
        out[f"ratio_extract_{short}_vs_loop"] = med([t[ours] / t["per_sentence_loop"] for t in tps_rounds])
    out["n_tokens"] = n_tokens
    return out


def _rss_child(n: int) -> None:
    """Child process: extract features of ``n`` texts with a tiny model; print peak RSS (KiB)."""
    import resource

    from probes.features import extract_features
    from tiny_models import make_model, make_tokenizer

    torch.set_num_threads(1)
    tok = make_tokenizer()
    hf = make_model("gpt2", len(tok))
    texts = _texts(n)
    extract_features(hf, texts[:64], tokenizer=tok, use_cache=False, progress=False)  # warm-up allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    feats = extract_features(hf, texts, tokenizer=tok, use_cache=False, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "rss_before_kib": before, "peak_kib": peak, "rows": int(feats.shape[0])}))


def memory(small: int = 1000, large: int = 10000) -> dict[str, float]:
    """Return peak RSS of fresh processes for ``small`` and ``large`` texts, and the growth."""
    res = {}
    for n in (small, large):
        proc = subprocess.run([sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True,
                              cwd=ROOT, check=True)
        res[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = res[large]["peak_kib"] / res[small]["peak_kib"] - 1.0
    return {f"peak_rss_{small}_mib": res[small]["peak_kib"] / 1024, f"peak_rss_{large}_mib": res[large]["peak_kib"] / 1024,
            # what the extraction itself added on top of the process's earlier peak
            f"extract_rss_delta_{small}_mib": (res[small]["peak_kib"] - res[small]["rss_before_kib"]) / 1024,
            f"extract_rss_delta_{large}_mib": (res[large]["peak_kib"] - res[large]["rss_before_kib"]) / 1024,
            "rss_growth": growth}


def main() -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--texts", type=int, default=192)
    ap.add_argument("--layers", type=int, default=N_LAYERS, help="model depth (4 = the embedded default's)")
    ap.add_argument("--d-model", type=int, default=D_MODEL, help="model width (256 = the embedded default's)")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    from shapes import SHAPES

    ap.add_argument("--shape", default=None, choices=list(SHAPES),
                    help="random-init model of a paper shape (benchmarks/shapes.py) instead of --layers/--d-model")
    ap.add_argument("--dtype", default="auto", help="with --shape: auto (paper policy), fp32 or bf16")
    ap.add_argument("--skip-memory", action="store_true", help="skip the 1k-vs-10k-texts RSS check (tiny model)")
    args = ap.parse_args()
    if args.rss_child is not None:
        _rss_child(args.rss_child)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {**throughput(n_texts=args.texts, device=args.device, n_layers=args.layers, d_model=args.d_model,
                        shape=args.shape, dtype=args.dtype),
           **({} if args.skip_memory else memory())}
    goals = {"ratio_extract_hf_vs_bare": 0.85, "ratio_extract_bridge_vs_bare": 0.85,
             "ratio_extract_hf_vs_loop": 5.0, "ratio_extract_bridge_vs_loop": 5.0}
    for k, v in out.items():
        mark = ""
        if k in goals:
            mark = "  ok" if v >= goals[k] else f"  BELOW goal {goals[k]}"
        elif k == "rss_growth":
            mark = "  ok" if v <= 0.10 else "  ABOVE goal 0.10"
        print(f"{k}: {v:.3f}{mark}" if isinstance(v, float) else f"{k}: {v}")
    return out


if __name__ == "__main__":
    main()
