"""Activation patching between a base and a tuned model: how much of the toxicity change flows
through chosen MLP neurons (going beyond the paper; cf. Yang et al. 2024, arXiv 2411.06424).

Convention (one, used everywhere here): the *patched* model decodes greedily along its own
trajectory with the KV cache (:func:`interp.neurons.activations.greedy_decode`). The *source* model runs
in lockstep on exactly the same token inputs (the same left-padded prompt batch, then each token
the patched model just chose), with its own KV cache and no edits. At every forward pass, at
every position (prompt and generated) and in every patched layer, the patched model's
activations of the chosen neurons (``blocks.{l}.mlp.hook_post``: the input of the down
projection) are replaced by the source model's activations at the same positions. Nothing else
of the source model enters the patched model.

* forward patching: base model, tuned activations. ``share = (patched - base) / (tuned - base)``.
* reverse patching: tuned model, base activations restored. ``share = (tuned - restored) / (tuned - base)``.

Toxicities are means over prompts of one greedy continuation's score; CIs are percentile
bootstraps over prompts (:func:`interp.crosslingual.stats.paired_bootstrap_ci`, all columns resampled
together). ``lang == "all"`` pools the prompts of every language. A share of 1 means the
neurons carry the whole change; 0 means none of it. A share is only meaningful where the
base->tuned change itself is real: rows whose change CI includes 0 get ``change_is_noise`` and a
warning (the share then divides by noise and its CI is not informative). Controls: random neuron sets with the same
number of neurons per layer (disjoint from the chosen set), and all MLP neurons of those layers.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from interp.neurons.activations import (activation_hooks, as_neuron_list, bare_modules, collect_generation_activations,
                                encode_prompts, generation_budget, greedy_decode, group_by_layer, tokenizer_of,
                                validate_neurons, validate_prompts, validate_prompts_by_language,
                                _accepts_position_ids)
from interp.model.architecture import get_adapter, hf_model_of
from interp.model.loading import activate, checked_cache

Neuron = tuple[int, int]
ScoreFn = Callable[[list[str], str], list[float]]
SUMMARY_COLUMNS = ["set", "direction", "lang", "n_neurons", "n_prompts", "tox_base", "tox_tuned", "tox_patched",
                   "change", "change_lo", "change_hi", "change_is_noise", "share", "share_lo", "share_hi", "warning"]
#: Below this absolute base->tuned change (mean toxicity) a share is not defined.
MIN_CHANGE = 1e-9


class PatchingInputError(ValueError):
    """The two models cannot be patched into each other (shapes, tokenizers, shared weights)."""


def _check_pair(target: Any, source: Any) -> None:
    from interp.model.loading import ModelView

    target, source = (m.model if isinstance(m, ModelView) else m for m in (target, source))
    ht, hs = hf_model_of(target), hf_model_of(source)
    if ht is hs:
        raise PatchingInputError(
            "patching needs two separate models, but both share one set of modules (adapter views of one "
            "bridge); merge the adapter (xdetox dpo merge) and load the merged model as the tuned model")
    at, as_ = get_adapter(target), get_adapter(source)
    if (at.n_layers, at.d_mlp) != (as_.n_layers, as_.d_mlp):
        raise PatchingInputError(f"models differ in shape: {at.n_layers} layers x d_mlp {at.d_mlp} vs "
                                 f"{as_.n_layers} x {as_.d_mlp}; patch a model and its own fine-tune")
    if tokenizer_of(target).get_vocab() != tokenizer_of(source).get_vocab():
        raise PatchingInputError("the two models use different tokenizers; patching needs the same tokens")


class _LockstepSource:
    """Runs the source model on the patched model's inputs and keeps its activations of the neurons."""

    def __init__(self, model: Any, cols: dict[int, Tensor]) -> None:
        self.hf = hf_model_of(model)
        self.device = next(self.hf.parameters()).device
        pad = getattr(self.hf.config, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        self.use_pos = _accepts_position_ids(self.hf)
        self.cols = {l: c.to(self.device) for l, c in cols.items()}
        self.acts: dict[int, Tensor] = {}
        self.past: Any = None
        self.mask: Tensor | None = None
        self.pos: Tensor | None = None

    def grab(self, layer: int, act: Tensor) -> None:
        self.acts[layer] = act[..., self.cols[layer]].detach()
        return None

    def start(self, seqs: list[list[int]]) -> None:
        # The same left padding and position ids as interp.neurons.activations._decode_batches.
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in seqs], device=self.device)
        self.mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        self.pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
        kw: dict[str, Any] = {"attention_mask": self.mask, "use_cache": True}
        if self.use_pos:
            kw["position_ids"] = self.pos
        self.past = checked_cache(self.hf(input_ids=ids, **kw).past_key_values, width)

    def step(self, nxt: Int[Tensor, " batch"]) -> None:
        assert self.mask is not None and self.pos is not None
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(nxt), 1)], dim=1)
        self.pos = self.pos[:, -1:] + 1
        kw: dict[str, Any] = {"attention_mask": self.mask, "use_cache": True, "past_key_values": self.past}
        if self.use_pos:
            kw["position_ids"] = self.pos
        self.past = checked_cache(self.hf(input_ids=nxt[:, None].to(self.device), **kw).past_key_values,
                                  self.mask.shape[1])


@torch.no_grad()
def patched_greedy_decode(target: Any, source: Any, prompts: Sequence[str], neurons: Sequence[Neuron] | Any, *,
                          n_new_tokens: int = 20, batch_size: int = 16) -> Int[Tensor, "n_prompts n_new_tokens"]:
    """Return the greedy tokens of ``target`` with the neurons' activations taken from ``source``.

    See the module docstring for the convention (source in lockstep on the target's own
    trajectory, every position patched, KV caches on both sides).
    """
    validate_prompts(list(prompts))
    _check_pair(target, source)
    with activate(target) as t, activate(source) as s:
        neurons = validate_neurons(t, neurons)
        # The same tokenization rule and context budget as collect_generation_activations, so the
        # patched runs see exactly the inputs of the baseline runs they are compared with.
        budget = generation_budget(t, n_new_tokens)
        ids = encode_prompts(t, list(prompts), max_length=budget)
        if encode_prompts(s, list(prompts), max_length=budget) != ids:
            raise PatchingInputError("the two models tokenize the prompts differently (BOS policy or tokenizer); "
                                     "load both under the same tokenization rule")
        groups = group_by_layer(neurons)
        cols = {l: torch.tensor(sorted({u for _, u in g})) for l, g in groups.items()}
        src = _LockstepSource(s, cols)
        state = {"idx": []}

        def put(layer: int, act: Tensor) -> Tensor:
            out = act.clone()
            out[..., cols[layer].to(act.device)] = src.acts[layer].to(device=act.device, dtype=act.dtype)
            return out

        def on_batch(idx: list[int]) -> None:
            state["idx"] = idx
            with bare_modules(src.hf):
                src.start([list(ids[i]) for i in idx])

        def on_step(step: int, nxt: Tensor) -> None:
            if step < n_new_tokens - 1:  # the last token is never fed back
                with bare_modules(src.hf):
                    src.step(nxt)

        with activation_hooks(s, {l: src.grab for l in cols}), activation_hooks(t, {l: put for l in cols}):
            return greedy_decode(t, ids, n_new_tokens, batch_size=batch_size, on_batch=on_batch, on_step=on_step)


def random_control(model: Any, neurons: Sequence[Neuron] | Any, *, seed: int = 0) -> list[Neuron]:
    """Return a random neuron set with the same count per layer as ``neurons``, disjoint from it."""
    with activate(model) as m:
        neurons = validate_neurons(m, neurons)
        d_mlp = get_adapter(m).d_mlp
    rng = random.Random(f"patching-control:{seed}")
    taken = set(neurons)
    out: list[Neuron] = []
    for layer, group in sorted(group_by_layer(neurons).items()):
        pool = [u for u in range(d_mlp) if (layer, u) not in taken]
        k = len({u for _, u in group})
        if k > len(pool):
            raise ValueError(f"layer {layer}: {k} neurons chosen but only {len(pool)} others to draw a control from")
        out += [(layer, u) for u in sorted(rng.sample(pool, k))]
    return out


def layer_control(model: Any, neurons: Sequence[Neuron] | Any) -> list[Neuron]:
    """Return every MLP neuron of the layers that ``neurons`` touch."""
    with activate(model) as m:
        neurons = validate_neurons(m, neurons)
        d_mlp = get_adapter(m).d_mlp
    return [(l, u) for l in sorted({l for l, _ in neurons}) for u in range(d_mlp)]


def _share_stat(direction: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    def stat(c: dict[str, np.ndarray]) -> np.ndarray:
        base, tuned, patched = c["base"].mean(-1), c["tuned"].mean(-1), c["patched"].mean(-1)
        num = patched - base if direction == "forward" else tuned - patched
        den = tuned - base
        return np.where(np.abs(den) > MIN_CHANGE, num / np.where(den == 0, 1, den), np.nan)
    return stat


def share_row(base: np.ndarray, tuned: np.ndarray, patched: np.ndarray, direction: str, *, n_boot: int = 2000,
              seed: int = 0) -> dict[str, Any]:
    """Return the share of the base->tuned change recovered by patching, with its bootstrap CI."""
    from interp.crosslingual.stats import paired_bootstrap_ci

    keep = np.isfinite(base) & np.isfinite(tuned) & np.isfinite(patched)  # failed scores drop the prompt
    base, tuned, patched = base[keep], tuned[keep], patched[keep]
    share, lo, hi = paired_bootstrap_ci({"base": base, "tuned": tuned, "patched": patched}, _share_stat(direction),
                                        n_boot=n_boot, seed=seed)
    change = float(tuned.mean() - base.mean()) if len(base) else float("nan")
    _, change_lo, change_hi = paired_bootstrap_ci({"base": base, "tuned": tuned},
                                                  lambda c: c["tuned"].mean(-1) - c["base"].mean(-1),
                                                  n_boot=n_boot, seed=seed)
    noise = not (abs(change) > MIN_CHANGE) or bool(change_lo <= 0 <= change_hi) or not np.isfinite(change_lo)
    if not abs(change) > MIN_CHANGE:
        warn = "base and tuned toxicity are equal here: the share is undefined"
    elif noise:
        warn = (f"the base->tuned change's 95% CI [{change_lo:+.3g}, {change_hi:+.3g}] includes 0: the change may be "
                "noise, so the share divides by noise; do not read it as a result")
    else:
        warn = ""
    return {"n_prompts": int(keep.sum()), "tox_base": float(base.mean()) if len(base) else float("nan"),
            "tox_tuned": float(tuned.mean()) if len(base) else float("nan"),
            "tox_patched": float(patched.mean()) if len(base) else float("nan"), "change": change,
            "change_lo": change_lo, "change_hi": change_hi, "change_is_noise": noise, "share": share, "share_lo": lo, "share_hi": hi, "warning": warn}


@dataclass
class PatchingResult:
    """Result of :func:`activation_patching` (pandas tables)."""

    summary: Any      # SUMMARY_COLUMNS: one row per (set, direction, lang) plus lang "all" (pooled)
    per_prompt: Any   # set, direction, lang, prompt, tox_base, tox_tuned, tox_patched
    key_drop: Any     # lang, key_base, key_tuned, key_drop (own trajectories, as in paper Fig. 3)
    meta: dict[str, Any] = field(default_factory=dict)

    def relation(self, signals: Any = None, *, set_name: str = "located", direction: str = "forward",
                 n_boot: int = 2000, n_perm: int = 5000, seed: int = 0) -> Any:
        """Return :func:`interp.crosslingual.stats.correlate` of the per-language share with the key-activation drop
        and any extra ``signals`` columns (e.g. ``retrieval_acc``), English excluded."""
        import pandas as pd

        from interp.crosslingual.stats import correlate

        s = self.summary
        share = s[(s["set"] == set_name) & (s["direction"] == direction) & (s["lang"] != "all")][["lang", "share"]]
        sig = self.key_drop[["lang", "key_drop"]]
        if signals is not None:
            sig = sig.merge(signals, on="lang", how="inner")
        share = share[share["lang"].isin(sig["lang"]) & share["share"].notna()]  # undefined shares drop out
        if not len(share):
            return pd.DataFrame([{"warning": "no language has a defined share (base and tuned toxicity are equal)"}])
        return correlate(sig.reset_index(drop=True), share.reset_index(drop=True), outcomes=["share"],
                         n_boot=n_boot, n_perm=n_perm, seed=seed, how="inner")

    def figure(self) -> Any:
        """Return a plotly bar chart: share per language and neuron set (forward patching), with CIs."""
        import plotly.graph_objects as go

        fig = go.Figure()
        s = self.summary[self.summary["direction"] == "forward"]
        for name, df in s.groupby("set", sort=False):
            fig.add_bar(name=str(name), x=df["lang"], y=df["share"],
                        error_y=dict(type="data", symmetric=False, array=(df["share_hi"] - df["share"]).fillna(0),
                                     arrayminus=(df["share"] - df["share_lo"]).fillna(0)))
        fig.update_layout(barmode="group", title="Share of the base→tuned toxicity change carried by the neurons "
                          "(base model, tuned activations)", xaxis_title="language", yaxis_title="share recovered")
        return fig

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the tables and metadata atomically as JSON with a manifest."""
        from interp.core.artifacts import make_manifest, write_json

        clean = lambda df: df.astype(object).where(df.notna(), None).to_dict(orient="records")  # noqa: E731
        return write_json(path, {"format": "xdetox-patching/1", "meta": self.meta,
                                 "manifest": make_manifest(kind="patching", config=self.meta, seed=self.meta.get("seed")),
                                 "summary": clean(self.summary), "per_prompt": clean(self.per_prompt),
                                 "key_drop": clean(self.key_drop)})


def _decode(model: Any, toks: Int[Tensor, "n_prompts n_steps"]) -> list[str]:
    tok = tokenizer_of(model.model if hasattr(model, "adapter_enabled") else model)
    return [tok.decode(t.tolist(), skip_special_tokens=True) for t in toks]


def activation_patching(
    base: Any, tuned: Any, neurons: Sequence[Neuron] | Any, prompts_by_language: dict[str, list[str]],
    score_fn: ScoreFn, *, n_new_tokens: int = 20, batch_size: int = 16, n_random: int = 1, layer_control_set: bool = True,
    directions: Sequence[str] = ("forward", "reverse"), n_boot: int = 2000, seed: int = 0, progress: bool = True,
) -> PatchingResult:
    """Return the share of each language's base->tuned toxicity change that the neurons carry.

    ``score_fn(texts, lang)`` scores greedy continuations (NaN = failed; the prompt is dropped).
    Neuron sets: ``located`` (``neurons``), ``random_1..n_random`` (same per-layer counts, disjoint)
    and, with ``layer_control_set``, ``layers_all`` (every MLP neuron of those layers).
    """
    import pandas as pd

    if score_fn is None:
        raise ValueError("activation_patching needs score_fn(texts, lang) -> list[float]")
    bad = [d for d in directions if d not in ("forward", "reverse")]
    if bad:
        raise ValueError(f"directions: {bad} unknown; use 'forward' and/or 'reverse'")
    langs = validate_prompts_by_language(prompts_by_language)
    with activate(base) as m:
        located = validate_neurons(m, as_neuron_list(neurons))
    _check_pair(base, tuned)
    sets: dict[str, list[Neuron]] = {"located": located}
    for r in range(n_random):
        sets[f"random_{r + 1}"] = random_control(base, located, seed=seed + r)
    if layer_control_set:
        sets["layers_all"] = layer_control(base, located)

    def scores(texts: list[str], lang: str) -> np.ndarray:
        out = np.asarray([float(x) for x in score_fn(texts, lang)], dtype=float)
        if len(out) != len(texts):
            raise ValueError(f"score_fn returned {len(out)} scores for {len(texts)} texts ({lang})")
        return out

    jobs = [(lang, s, d) for lang in langs for s in sets for d in directions]
    it: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="activation patching", leave=False)
    own: dict[str, dict[str, np.ndarray]] = {}
    keys = []
    for lang, ps in langs.items():
        acts_b, tok_b = collect_generation_activations(base, ps, located, n_new_tokens=n_new_tokens,
                                                       batch_size=batch_size, return_tokens=True)
        acts_t, tok_t = collect_generation_activations(tuned, ps, located, n_new_tokens=n_new_tokens,
                                                       batch_size=batch_size, return_tokens=True)
        own[lang] = {"base": scores(_decode(base, tok_b), lang), "tuned": scores(_decode(tuned, tok_t), lang)}
        kb, kt = float(acts_b.mean()), float(acts_t.mean())
        keys.append({"lang": lang, "key_base": kb, "key_tuned": kt, "key_drop": kb - kt})
    rows, per_prompt = [], []
    for lang, set_name, direction in it:
        target, source = (base, tuned) if direction == "forward" else (tuned, base)
        toks = patched_greedy_decode(target, source, langs[lang], sets[set_name], n_new_tokens=n_new_tokens,
                                     batch_size=batch_size)
        patched = scores(_decode(target, toks), lang)
        b, t = own[lang]["base"], own[lang]["tuned"]
        rows.append({"set": set_name, "direction": direction, "lang": lang, "n_neurons": len(sets[set_name]),
                     **share_row(b, t, patched, direction, n_boot=n_boot, seed=seed)})
        per_prompt += [{"set": set_name, "direction": direction, "lang": lang, "prompt": i, "tox_base": b[i],
                        "tox_tuned": t[i], "tox_patched": patched[i]} for i in range(len(b))]
    pp = pd.DataFrame(per_prompt, columns=["set", "direction", "lang", "prompt", "tox_base", "tox_tuned", "tox_patched"])
    for (set_name, direction), df in pp.groupby(["set", "direction"], sort=False):
        rows.append({"set": set_name, "direction": direction, "lang": "all", "n_neurons": len(sets[set_name]),
                     **share_row(df["tox_base"].to_numpy(), df["tox_tuned"].to_numpy(), df["tox_patched"].to_numpy(),
                                 direction, n_boot=n_boot, seed=seed)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    meta = {"convention": "patched model on its own greedy trajectory (KV cache); source model in lockstep on the "
                          "same tokens; neuron activations (MLP hook_post) replaced at every position",
            "neurons": located, "sets": {k: len(v) for k, v in sets.items()}, "directions": list(directions),
            "n_new_tokens": n_new_tokens, "n_boot": n_boot, "seed": seed, "all_row": "prompts pooled over languages",
            "n_prompts": {k: len(v) for k, v in langs.items()}}
    return PatchingResult(summary, pp, pd.DataFrame(keys, columns=["lang", "key_base", "key_tuned", "key_drop"]), meta)


__all__ = ["activation_patching", "patched_greedy_decode", "random_control", "layer_control", "share_row",
           "PatchingResult", "PatchingInputError", "SUMMARY_COLUMNS"]
