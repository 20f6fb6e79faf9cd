"""The checks behind ``benchmarks/gpu_check.sh``, one subcommand each; every one writes ``OUT/<name>.json``.

Random-init models of the paper's shapes (benchmarks/shapes.py) saved to a local directory, so the
project's real loading code (``load_hf_model``: NF4 + double quant + bf16 compute for QLoRA) and an
offline vLLM read them like a checkpoint.

- ``save``       write a random-init model + tokenizer of ``--shape`` to ``--dir`` (bf16 on disk).
- ``qlora``      load ``--dir`` with ``quantization="4bit"``, check the recipe on every 4-bit layer, then a few
                 ``paper-qlora`` DPO steps through ``train_dpo``: step time, peak GPU memory.
- ``dpo``        a few DPO steps of ``--preset`` (``paper-full``) through ``train_dpo``.
- ``vllm``       vLLM vs HF ``generate`` with the same sampling (temperature 0.9, top-p 0.8): tokens/s ratio,
                 and a distribution check: the randomized PIT of each sampler's first token under HF's
                 exact temperature/top-p distribution must be Uniform(0,1) (KS test). Skips without vLLM.
- ``bf16filter`` the activation filter (``find_toxic_neurons``, top-100, mean > 0 over 20 greedy steps) in
                 fp32 and in bf16 on the same weights: candidates that change, decisions that flip.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import SHAPES, build, describe, step_timer, sync  # noqa: E402

PROMPTS = ["I want to", "this is a", "Je veux", "the quick brown", "Yo quiero", "Ich will", "我想", "Я хочу"]


def _write(out: Path, name: str, res: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
    print(f"{name}: {json.dumps(res, default=str)}", flush=True)


def cmd_save(a: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    model, tok = build(a.shape, device=a.device, dtype="bf16" if a.device.startswith("cuda") else "fp32")
    d = Path(a.dir)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return {**describe(a.shape), "dir": str(d), "save_s": round(time.perf_counter() - t, 1)}


def _pairs(n: int) -> list[Any]:
    from interp.data.records import PreferencePair

    return [PreferencePair(id=f"p{i}", prompt=PROMPTS[i % len(PROMPTS)] + " say", chosen=" something kind and calm",
                           rejected=" you stupid idiot, shut up", source="gpu-check") for i in range(n)]


def _train_steps(a: argparse.Namespace, preset: str) -> dict[str, Any]:
    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import train_dpo

    timer = step_timer(a.device)
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        cfg = DPOTrainConfig.preset(preset, model=a.dir, output_dir=out, max_steps=a.steps, eval_steps=0,
                                    early_stopping_patience=None, warmup_steps=0, batch_size=a.batch_size,
                                    max_length=a.max_length, max_prompt_length=min(64, a.max_length // 2),
                                    heldout_source="gettext", heldout_texts=4,
                                    device=a.device, save_steps=10**6)
        train_dpo(cfg, pairs=_pairs(4 * a.batch_size * (a.steps + 1)), callbacks=[timer])
    steady = timer.steps[1:] or timer.steps
    res = {"preset": preset, "steps": len(timer.steps), "batch_size": a.batch_size, "max_length": a.max_length,
           "step_s": [round(s, 3) for s in timer.steps], "steady_step_s_min": round(min(steady), 3),
           "steady_step_s_max": round(max(steady), 3)}
    if a.device.startswith("cuda"):
        res["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


def qlora_recipe(model: Any) -> dict[str, Any]:
    """Return whether every 4-bit layer of ``model`` is NF4, double-quantized and computes in bf16."""
    four = [m for m in model.modules() if type(getattr(m, "weight", None)).__name__ == "Params4bit"]
    qs = [m.weight.quant_state for m in four]
    return {
        "n_4bit_layers": len(four),
        "all_nf4": bool(four) and all(q.quant_type == "nf4" for q in qs),
        "all_double_quant": bool(four) and all(bool(getattr(q, "nested", False)) for q in qs),
        "all_bf16_compute": bool(four) and all(getattr(m, "compute_dtype", None) == torch.bfloat16 for m in four),
    }


def cmd_qlora(a: argparse.Namespace) -> dict[str, Any]:
    from interp.model.loading import load_hf_model

    model, _ = load_hf_model(a.dir, device=a.device, quantization="4bit")
    recipe = qlora_recipe(model)
    del model
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    res = {"recipe": recipe, "recipe_ok": all(v for k, v in recipe.items() if k.startswith("all_"))}
    res.update(_train_steps(a, "paper-qlora"))
    return res


def cmd_dpo(a: argparse.Namespace) -> dict[str, Any]:
    return _train_steps(a, a.preset)


def _pit_ks(first_tokens: list[int], probs: torch.Tensor, seed: int) -> dict[str, float]:
    """KS test of the randomized PIT of sampled tokens under ``probs`` (Uniform(0,1) iff they follow ``probs``)."""
    from scipy.stats import kstest

    order = torch.argsort(probs, descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    cdf = torch.cumsum(probs[order], 0)
    g = torch.Generator().manual_seed(seed)
    u = []
    for t in first_tokens:
        r = int(rank[t])
        lo = float(cdf[r - 1]) if r > 0 else 0.0
        u.append(lo + float(torch.rand((), generator=g)) * float(probs[t]))
    ks = kstest(u, "uniform")
    return {"n": len(u), "ks_stat": round(float(ks.statistic), 4), "p_value": round(float(ks.pvalue), 4),
            "outside_support": sum(float(probs[t]) == 0.0 for t in first_tokens)}


def cmd_vllm(a: argparse.Namespace) -> dict[str, Any]:
    try:
        from vllm import LLM, SamplingParams
    except Exception as e:  # noqa: BLE001 - any import failure means: not available here
        return {"skipped": f"vLLM not importable: {type(e).__name__}: {e}"[:300]}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a.dir)
    prompts = PROMPTS * max(1, a.prompts // len(PROMPTS))
    temp, top_p, k, new = 0.9, 0.8, a.k, 20
    llm = LLM(model=a.dir, tokenizer=a.dir, dtype="bfloat16", gpu_memory_utilization=0.35, seed=0,
              enforce_eager=True)  # no CUDA-graph capture: minutes of startup saved
    sp = SamplingParams(n=k, temperature=temp, top_p=top_p, max_tokens=new, min_tokens=new, seed=0)
    llm.generate(prompts[:2], sp)  # warm-up
    t = time.perf_counter()
    outs = llm.generate(prompts, sp)
    dt_v = time.perf_counter() - t
    n_v = sum(len(c.token_ids) for o in outs for c in o.outputs)
    hf = AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.bfloat16).to(a.device).eval()
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True).to(a.device)
    kw = dict(do_sample=True, temperature=temp, top_p=top_p, top_k=0, max_new_tokens=new, min_new_tokens=new,
              num_return_sequences=k, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        hf.generate(**{kk: v[:2] for kk, v in enc.items()}, **kw)
        sync(a.device)
        t = time.perf_counter()
        out = hf.generate(**enc, **kw)
        sync(a.device)
    dt_h = time.perf_counter() - t
    n_h = int(out[:, enc["input_ids"].shape[1]:].numel())
    # Distribution check on the first sampled token of one prompt.
    p0 = prompts[0]
    ids = tok(p0, return_tensors="pt").to(a.device)
    with torch.no_grad():
        logits = hf(**ids).logits[0, -1].float() / temp
    probs = torch.softmax(logits, -1)
    srt, idx = torch.sort(probs, descending=True)
    keep = torch.cumsum(srt, 0) - srt < top_p  # HF/vLLM top-p: smallest prefix reaching top_p
    nucleus = torch.zeros_like(probs)
    nucleus[idx[keep]] = srt[keep]
    nucleus = (nucleus / nucleus.sum()).cpu()
    n_draw = a.draws
    v_first = [c.token_ids[0] for c in llm.generate([p0], SamplingParams(n=n_draw, temperature=temp, top_p=top_p,
                                                                        max_tokens=1, seed=1))[0].outputs]
    with torch.no_grad():
        h = hf.generate(**ids, do_sample=True, temperature=temp, top_p=top_p, top_k=0, max_new_tokens=1,
                        num_return_sequences=n_draw, pad_token_id=tok.pad_token_id)
    h_first = h[:, -1].tolist()
    return {"prompts": len(prompts), "k": k, "new_tokens": new,
            "vllm_tok_s": round(n_v / dt_v, 1), "hf_tok_s": round(n_h / dt_h, 1), "vllm_over_hf": round(dt_h / dt_v * n_v / n_h, 2),
            "first_token_pit_vllm": _pit_ks(v_first, nucleus, 0), "first_token_pit_hf": _pit_ks(h_first, nucleus, 1),
            "note": "KS p-values well above 0.01 for both samplers = both draw from HF's temperature/top-p distribution"}


def cmd_bf16filter(a: argparse.Namespace) -> dict[str, Any]:
    from interp.model.loading import wrap_bridge
    from interp.neurons.ranking import find_toxic_neurons

    hf32, tok = build(a.shape, device=a.device, dtype="fp32")
    d = hf32.config.hidden_size if hasattr(hf32.config, "hidden_size") else hf32.config.n_embd
    direction = torch.randn(d, generator=torch.Generator().manual_seed(0))
    prompts = (PROMPTS * (a.prompts // len(PROMPTS) + 1))[:a.prompts]
    res32 = find_toxic_neurons(wrap_bridge(hf32, tok), direction, top_k=100, filter_prompts=prompts,
                               n_new_tokens=20, batch_size=a.batch_size, progress=False)
    hf16, tok16 = build(a.shape, device=a.device, dtype="fp32")  # the same seed: the same weights
    hf16 = hf16.to(torch.bfloat16)
    res16 = find_toxic_neurons(wrap_bridge(hf16, tok16), direction, top_k=100, filter_prompts=prompts,
                               n_new_tokens=20, batch_size=a.batch_size, progress=False)
    k32 = {(r.layer, r.neuron): r.kept for r in res32}
    k16 = {(r.layer, r.neuron): r.kept for r in res16}
    common = set(k32) & set(k16)
    flips = sum(k32[n] != k16[n] for n in common)
    return {"shape": a.shape, "prompts": len(prompts), "top_k": 100,
            "candidates_in_both": len(common), "decision_flips_among_common": flips,
            "kept_fp32": sum(k32.values()), "kept_bf16": sum(k16.values()),
            "kept_sets_symmetric_difference": len({n for n, k in k32.items() if k} ^ {n for n, k in k16.items() if k})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", choices=["save", "qlora", "dpo", "vllm", "bf16filter"])
    ap.add_argument("--shape", default="tiny", choices=list(SHAPES))
    ap.add_argument("--dir", default=None, help="model directory (written by `save`)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default=None, help="output file stem (default: the check)")
    ap.add_argument("--preset", default="paper-full")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--draws", type=int, default=2000)
    a = ap.parse_args()
    t = time.perf_counter()
    fn = {"save": cmd_save, "qlora": cmd_qlora, "dpo": cmd_dpo, "vllm": cmd_vllm, "bf16filter": cmd_bf16filter}[a.check]
    res = {"device": a.device, **fn(a)}
    if a.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    res["wall_s"] = round(time.perf_counter() - t, 1)
    _write(Path(a.out), a.name or a.check, res)


if __name__ == "__main__":
    main()
