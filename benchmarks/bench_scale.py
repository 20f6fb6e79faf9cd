"""Benchmark: every analysis stage at a paper model's shape (random init), as ratios in this one run.

Each stage runs in a fresh subprocess so its peak RSS is its own:

- ``load``     load (``load_hf_model`` on a once-saved random-init checkpoint) + bridge: peak RSS / weights.
- ``rank``     value vectors of every layer + the stacked cosine ranking (``rank_value_vectors``): time.
- ``collect``  ``collect_generation_activations`` (100 neurons, greedy) vs a bare HF ``generate`` with
               the same batches, on an unwrapped view sharing the same weights: paired, interleaved.
- ``features`` ``extract_features`` on the bridge vs a bare HF forward of the same batches (the body
               only, and the full CausalLM): paired, interleaved.
- ``views``    base and tuned views of one LoRA-carrying bridge (value vectors + features from both):
               peak RSS / weights, i.e. no second copy of the base model.
- ``dpo``      LoRA DPO steps through TRL with the project's ``dpo_args``/``lora_config``: step time.

Bars (issue 20): peak RSS <= 1.6x weights for every analysis stage; collection <= 1.1x bare generate;
features >= 0.9x bare forward; ranking over all value vectors < 2 s for mGPT.
Run: ``python benchmarks/bench_scale.py --shape mgpt [--stages load,rank] [--out results.json]``.
The parent refuses a shape whose estimated peak does not fit in the machine's available memory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import (SHAPES, add_shape_arg, bare_view, build, describe, peak_rss_bytes, step_timer, sync,  # noqa: E402
                    weights_bytes)

STAGES = ("load", "rank", "collect", "features", "views", "dpo")
ANALYSIS = ("load", "rank", "collect", "features", "views")  # the RSS bar applies to these
ROOT = Path(__file__).resolve().parents[1]


def _timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def paired(fns: dict[str, Callable[[], Any]], rounds: int, device: str) -> dict[str, list[float]]:
    """Run every fn once per round, rotating the order, after one warm-up each; return seconds per round."""
    names = list(fns)
    for f in fns.values():
        f()
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            out[k].append(_timed(fns[k], device))
    return out


def _ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    rs = [a / b for a, b in zip(num, den)]
    return {"median": round(statistics.median(rs), 3), "min": round(min(rs), 3), "max": round(max(rs), 3)}


def _prompts(n: int) -> list[str]:
    from tiny_models import TINY_TEXT

    return [TINY_TEXT[i % len(TINY_TEXT)] + (" again" * (i % 4)) for i in range(n)]


def _texts(n: int) -> list[str]:
    try:
        from interp.data.sources import paradetox_labeled

        base = [r.text for r in paradetox_labeled()]
    except (FileNotFoundError, ValueError, ImportError):
        from tiny_models import TINY_TEXT

        base = TINY_TEXT
    return [base[i % len(base)] for i in range(n)]


def bare_generate(model: Any, ids: list[list[int]], batch: int, n_new: int, device: str, pad_id: int = 1) -> None:
    """Bare HF greedy ``generate`` (KV cache) over length-sorted, left-padded batches of ``ids``."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for s in range(0, len(order), batch):
        seqs = [ids[i] for i in order[s:s + batch]]
        w = max(map(len, seqs))
        x = torch.tensor([[pad_id] * (w - len(q)) + q for q in seqs], device=device)
        m = torch.tensor([[0] * (w - len(q)) + [1] * len(q) for q in seqs], device=device)
        with torch.no_grad():
            model.generate(input_ids=x, attention_mask=m, max_new_tokens=n_new, min_new_tokens=n_new,
                           do_sample=False, pad_token_id=pad_id)


# ----------------------------------------------------------------------------- stages (child side)
def stage(name: str, a: argparse.Namespace) -> dict[str, Any]:
    from interp.model.architecture import get_adapter
    from interp.model.loading import wrap_bridge

    import peft, trl, transformers  # noqa: F401,E401  (imported before the baseline RSS reading)
    import interp.neurons.activations, probes.features  # noqa: F401,E401

    base_rss = peak_rss_bytes()  # interpreter + libraries, before any weights exist
    t0 = time.perf_counter()
    if a.model_dir:  # the real loader on a saved random-init checkpoint
        from interp.model.loading import load_hf_model

        hf, tok = load_hf_model(a.model_dir, dtype=a.dtype, device=a.device)
    else:
        hf, tok = build(a.shape, device=a.device, dtype=a.dtype)
    wbytes = weights_bytes(hf)
    res: dict[str, Any] = {"stage": name, "weights_gib": round(wbytes / 2**30, 3),
                           "dtype": str(next(hf.parameters()).dtype).removeprefix("torch."),
                           "load_s": round(time.perf_counter() - t0, 1)}
    if name == "dpo":
        res.update(_dpo(hf, tok, a))
    elif name == "views":
        res.update(_views(hf, tok, a))
    else:
        bare = bare_view(hf) if name in ("collect", "features") else None
        bridge = wrap_bridge(hf, tok)
        ad = get_adapter(bridge)
        res.update(n_layers=ad.n_layers, d_model=ad.d_model, d_mlp=ad.d_mlp)
        if name == "rank":
            res.update(_rank(ad, a))
        elif name == "collect":
            res.update(_collect(bridge, bare, ad, a))
        elif name == "features":
            res.update(_features(bridge, bare, tok, a))
    peak = peak_rss_bytes()
    res["baseline_rss_gib"] = round(base_rss / 2**30, 3)
    res["peak_rss_gib"] = round(peak / 2**30, 3)
    # The bar's figure: what the stage added over the bare interpreter, per byte of weights.
    res["peak_rss_over_weights"] = round((peak - base_rss) / wbytes, 3)
    res["peak_rss_incl_interpreter_over_weights"] = round(peak / wbytes, 3)
    if a.device.startswith("cuda"):
        res["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return res


def _rank(ad: Any, a: argparse.Namespace) -> dict[str, Any]:
    from interp.neurons.ranking import rank_value_vectors

    t = time.perf_counter()
    V = ad.value_vectors()
    t_v = time.perf_counter() - t
    w = torch.randn(ad.d_model, generator=torch.Generator().manual_seed(0)).to(V.device)
    ts = paired({"rank": lambda: rank_value_vectors(V, w, 100)}, a.rounds, a.device)["rank"]
    return {"value_vectors_s": round(t_v, 3), "n_value_vectors": int(V.shape[0] * V.shape[1]),
            "rank_s": {"min": round(min(ts), 3), "max": round(max(ts), 3)}}


def _collect(bridge: Any, bare: Any, ad: Any, a: argparse.Namespace) -> dict[str, Any]:
    from interp.neurons.activations import collect_generation_activations, encode_prompts

    prompts = _prompts(a.prompts)
    g = torch.Generator().manual_seed(0)
    neurons = [(int(l), int(i)) for l, i in zip(torch.randint(0, ad.n_layers, (100,), generator=g),
                                                torch.randint(0, ad.d_mlp, (100,), generator=g))]
    ids = encode_prompts(bridge, prompts)
    t = paired({
        "ours": lambda: collect_generation_activations(bridge, prompts, neurons, n_new_tokens=a.new_tokens,
                                                       batch_size=a.batch_size),
        "bare_generate": lambda: bare_generate(bare, ids, a.batch_size, a.new_tokens, a.device),
    }, a.rounds, a.device)
    return {"prompts": len(prompts), "new_tokens": a.new_tokens, "batch_size": a.batch_size,
            "collect_s": t["ours"], "bare_generate_s": t["bare_generate"],
            "collect_over_bare_generate": _ratio_stats(t["ours"], t["bare_generate"])}


def _features(bridge: Any, bare: Any, tok: Any, a: argparse.Namespace) -> dict[str, Any]:
    from probes.features import CHUNK_BATCHES, _pad, _tokenize, extract_features

    from interp.model.tokenization import token_rule

    texts = _texts(a.texts)
    bs = a.batch_size
    rule = token_rule(bridge)  # the run's tokenization rule, as extract_features applies it
    batches = []
    for start in range(0, len(texts), bs * CHUNK_BATCHES):
        seqs = _tokenize(rule, texts[start:start + bs * CHUNK_BATCHES], max_length=128)
        seqs.sort(key=len)
        batches += [_pad(seqs[i:i + bs], tok.pad_token_id, "right") for i in range(0, len(seqs), bs)]
    body = bare.base_model

    def forward(m: Any) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for ids, mask in batches:
                    # no KV cache, as extract_features runs the model: the same work, not more
                    m(ids.to(a.device), attention_mask=mask.to(a.device), use_cache=False)
        return run

    t = paired({
        "ours": lambda: extract_features(bridge, texts, batch_size=bs, use_cache=False, progress=False),
        "bare_body": forward(body), "bare_causal_lm": forward(bare),
    }, a.rounds, a.device)
    # Throughput ratio = bare time / our time (same tokens).
    return {"texts": len(texts), "features_s": t["ours"], "bare_body_s": t["bare_body"],
            "bare_causal_lm_s": t["bare_causal_lm"],
            "features_over_bare_body_throughput": _ratio_stats(t["bare_body"], t["ours"]),
            "features_over_bare_causal_lm_throughput": _ratio_stats(t["bare_causal_lm"], t["ours"])}


def _views(hf: Any, tok: Any, a: argparse.Namespace) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model

    from interp.model.architecture import get_adapter
    from interp.model.loading import base_and_tuned, load_model
    from probes.features import extract_features

    targets = get_adapter(hf).lora_target_modules()
    pm = get_peft_model(hf, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.01)
    bridge = load_model(pm, tokenizer=tok)
    base, tuned = base_and_tuned(bridge)
    texts = _texts(16)
    out = {}
    for label, view in (("base", base), ("tuned", tuned)):
        t = time.perf_counter()
        with view.active() as m:
            v = get_adapter(m).value_vectors([0])
        f = extract_features(view, texts, batch_size=a.batch_size, use_cache=False, progress=False)
        out[f"{label}_s"] = round(time.perf_counter() - t, 2)
        out[f"{label}_feature_norm"] = round(float(f.norm()), 4)
        del v
    out["views_differ"] = out["base_feature_norm"] != out["tuned_feature_norm"]
    return out


def _dpo(hf: Any, tok: Any, a: argparse.Namespace) -> dict[str, Any]:
    from trl import DPOTrainer

    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import dpo_args, lora_config, to_dataset
    from interp.data.records import PreferencePair

    prompts = ["I want to", "this is a", "Je veux", "the quick brown", "Yo quiero", "Ich will"]
    pairs = [PreferencePair(id=f"p{i}", prompt=prompts[i % len(prompts)] + " say",
                            chosen=" something kind and calm about it today", rejected=" you stupid idiot, shut up now",
                            source="bench") for i in range(4 * a.dpo_batch * (a.dpo_steps + 1))]
    timer = step_timer(a.device)
    with tempfile.TemporaryDirectory() as d:
        cfg = DPOTrainConfig.preset(a.dpo_preset, output_dir=d, per_device_train_batch_size=a.dpo_batch,
                                    max_steps=a.dpo_steps,
                                    max_length=a.dpo_max_length, max_prompt_length=16, warmup_steps=0,
                                    eval_steps=0, early_stopping_patience=None, logging_steps=1)
        args = dpo_args(cfg, a.device, has_eval=False)
        args.save_strategy = "no"
        trainer = DPOTrainer(model=hf, ref_model=None, args=args, train_dataset=to_dataset(pairs, tok),
                             processing_class=tok, peft_config=lora_config(cfg, hf), callbacks=[timer])
        trainer.train()
    steady = timer.steps[1:] or timer.steps
    return {"dpo_preset": a.dpo_preset, "dpo_batch": a.dpo_batch, "dpo_max_length": a.dpo_max_length,
            "dpo_step_s": [round(s, 2) for s in timer.steps],
            "dpo_steady_step_s": {"min": round(min(steady), 2), "max": round(max(steady), 2)}}


# ----------------------------------------------------------------------------- parent side
def _mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _estimated_weights_bytes(shape: str, dtype: str, device: str) -> int:
    import transformers as T

    from shapes import resolve_dtype

    with torch.device("meta"):
        m = T.AutoModelForCausalLM.from_config(SHAPES[shape].config())
    n = sum(p.numel() for p in m.parameters())
    return n * torch.tensor([], dtype=resolve_dtype(dtype, device)).element_size()


def _code_version() -> dict[str, Any]:
    """Return the git commit of the code measured and whether the tree had uncommitted changes."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def run(a: argparse.Namespace) -> dict[str, Any]:
    """Run the requested stages, each in a fresh subprocess; return {stage: result} plus the bar checks."""
    est = _estimated_weights_bytes(a.shape, a.dtype, a.device)
    avail = _mem_available_bytes()
    need = int(est * a.mem_factor)
    if a.device == "cpu" and avail and need > avail and not a.force:
        raise SystemExit(f"bench_scale: shape {a.shape} needs ~{need / 2**30:.1f} GiB "
                         f"({a.mem_factor}x {est / 2**30:.1f} GiB of weights) but only {avail / 2**30:.1f} GiB are "
                         "available; run it on a bigger machine (or --force)")
    out: dict[str, Any] = {"shape": describe(a.shape), "device": a.device, "threads": torch.get_num_threads(),
                           "machine": a.machine, "argv": sys.argv[1:], "code": _code_version(), "stages": {}}
    child = [sys.executable, __file__, "--shape", a.shape, "--dtype", a.dtype, "--device", a.device,
             "--rounds", str(a.rounds), "--prompts", str(a.prompts), "--new-tokens", str(a.new_tokens),
             "--batch-size", str(a.batch_size), "--texts", str(a.texts), "--dpo-preset", a.dpo_preset,
             "--dpo-steps", str(a.dpo_steps), "--dpo-batch", str(a.dpo_batch),
             "--dpo-max-length", str(a.dpo_max_length)]
    if a.shape != "tiny" and not a.no_save:
        t = time.perf_counter()
        # In a child, so that this parent stays small (its children are forked from it).
        code = ("import sys; sys.path.insert(0, 'benchmarks'); from shapes import materialize; "
                f"print(materialize({a.shape!r}, dtype={a.dtype!r}, device={a.device!r}))")
        d = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           check=True).stdout.strip().splitlines()[-1]
        out["model_dir"] = {"path": str(d), "materialize_s": round(time.perf_counter() - t, 1)}
        child += ["--model-dir", str(d)]
    for s in a.stages:
        t = time.perf_counter()
        proc = subprocess.run(child + ["--child", s], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            out["stages"][s] = {"error": proc.stderr.strip().splitlines()[-5:]}
        else:
            out["stages"][s] = json.loads(proc.stdout.strip().splitlines()[-1])
        out["stages"][s]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"[{a.shape}] {s}: {json.dumps(out['stages'][s])}", flush=True)
        if a.out:  # after every stage, so a time-boxed run keeps what it measured
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({**out, "bars": bars(out["stages"], a.shape)}, indent=1))
    out["bars"] = bars(out["stages"], a.shape)
    return out


def bars(st: dict[str, Any], shape: str) -> dict[str, Any]:
    """Return each bar's measured value and verdict from the stage results."""
    b: dict[str, Any] = {}
    for s in ANALYSIS:
        if "peak_rss_over_weights" in st.get(s, {}):
            r = st[s]["peak_rss_over_weights"]
            b[f"rss_{s}"] = {"value": r, "bar": "<= 1.6", "ok": r <= 1.6}
    if "collect_over_bare_generate" in st.get("collect", {}):
        r = st["collect"]["collect_over_bare_generate"]
        b["collection"] = {"value": r, "bar": "<= 1.1 (median)", "ok": r["median"] <= 1.1}
    if "features_over_bare_body_throughput" in st.get("features", {}):
        r = st["features"]["features_over_bare_body_throughput"]
        b["features"] = {"value": r, "bar": ">= 0.9 (median, vs body forward)", "ok": r["median"] >= 0.9}
    if "rank_s" in st.get("rank", {}):
        r = st["rank"]["rank_s"]
        b["ranking"] = {"value": r, "bar": "< 2 s" + (" (mGPT bar)" if shape == "mgpt" else " (informative)"),
                        "ok": r["min"] < 2.0}
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_arg(ap)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--dpo-preset", default="lora", help="detox_train preset for the dpo stage (lora, paper-qlora)")
    ap.add_argument("--dpo-steps", type=int, default=3)
    ap.add_argument("--dpo-batch", type=int, default=2)
    ap.add_argument("--dpo-max-length", type=int, default=64)
    ap.add_argument("--mem-factor", type=float, default=2.2, help="refuse unless this many x weights are available")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-save", action="store_true",
                    help="build the random init in every stage instead of saving it once and loading it with load_hf_model")
    ap.add_argument("--machine", default=os.environ.get("XDETOX_MACHINE", ""), help="recorded in the output")
    ap.add_argument("--out", default=None, help="write the JSON results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(stage(a.child, a)))
        return
    a.stages = [s for s in a.stages.split(",") if s]
    bad = [s for s in a.stages if s not in STAGES]
    if bad:
        ap.error(f"unknown stage(s) {bad}; choose from {','.join(STAGES)}")
    res = run(a)
    print(json.dumps(res["bars"], indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
