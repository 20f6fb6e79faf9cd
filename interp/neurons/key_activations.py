"""Stage 5 / paper Fig. 3: key-side multilinguality of the toxic neurons.

For every model (e.g. base and DPO views of one bridge) and language, the neuron group's mean
activation over ``n_new_tokens`` greedy steps on that language's prompts (each model follows its
own greedy trajectory), with Student-t confidence intervals over prompts, per-neuron detail, and
the key-side multilinguality per language: the first model's activation on X relative to English.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from interp.neurons.activations import (as_neuron_list, collect_generation_activations, collect_prompt_activations,
                                validate_prompts_by_language)
from interp.crosslingual.stats import mean_ci


@dataclass
class KeyActivations:
    """Result of :func:`key_activations` (tables are pandas DataFrames)."""

    summary: Any        # model, lang, mean, ci_lo, ci_hi, n_prompts
    per_neuron: Any     # model, lang, layer, neuron, mean
    ratio_to_english: Any  # lang, ratio, key_ratio (= ratio; first model)
    meta: dict[str, Any] = field(default_factory=dict)

    def figure(self) -> Any:
        """Return paper Fig. 3 for this result (:func:`interp.viz.figures.fig_key_activations`)."""
        from interp.viz.figures import fig_key_activations

        return fig_key_activations(self.summary)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the three tables and the metadata atomically as JSON (with a manifest)."""
        from interp.core.artifacts import make_manifest, write_json

        return write_json(path, {
            "format": "xdetox-key-activations/1", "meta": self.meta,
            "manifest": make_manifest(kind="key-activations", config=self.meta, seed=self.meta.get("seed")),
            "summary": self.summary.to_dict(orient="records"),
            "per_neuron": self.per_neuron.to_dict(orient="records"),
            "ratio_to_english": self.ratio_to_english.to_dict(orient="records")})


def key_activations(
    models: dict[str, Any], neurons: Sequence[tuple[int, int]], prompts_by_language: dict[str, list[str]], *,
    n_new_tokens: int = 20, batch_size: int = 16, n_boot: int = 1000, seed: int = 0, progress: bool = True,
    positions: str = "generation",
) -> KeyActivations:
    """Return per-language mean activations of the neuron group for each model (paper Fig. 3).

    A prompt's value is the mean over its steps and the neurons; the language mean is the mean of
    those, and its CI the Student-t interval of :func:`interp.crosslingual.stats.mean_ci` over prompts (zero
    width at the mean for one prompt or zero spread; ``n_boot`` and ``seed`` are only recorded in
    ``meta``). ``ratio_to_english`` divides the first model's language means by its English mean
    (NaN when English is absent or its mean is <= 0, since a ratio to a non-positive baseline has
    no "relative strength" meaning).
    ``positions="prompt"`` averages over each prompt's own tokens instead of greedy steps (the
    version for encoders, which cannot generate).
    """
    import pandas as pd

    if not models:
        raise ValueError("models is empty; pass e.g. {'base': base_view, 'dpo': tuned_view}")
    if positions not in ("generation", "prompt"):
        raise ValueError(f"positions must be 'generation' or 'prompt', got {positions!r}")
    langs = validate_prompts_by_language(prompts_by_language)
    neurons = [(int(l), int(i)) for l, i in as_neuron_list(neurons)]
    summary, detail = [], []
    jobs = [(name, lang) for name in models for lang in langs]
    it: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="key activations (model x language)", leave=False, unit="language")
    for name, lang in it:
        if positions == "prompt":
            acts = collect_prompt_activations(models[name], langs[lang], neurons, batch_size=batch_size)
        else:
            acts = collect_generation_activations(models[name], langs[lang], neurons, n_new_tokens=n_new_tokens,
                                                  batch_size=batch_size)
        per_prompt = acts.mean(dim=(1, 2)).double().numpy()
        m, lo, hi, _ = mean_ci(per_prompt)
        if not np.isfinite(lo):  # one prompt or zero spread: a zero-width CI at the mean, not NaN bars
            lo = hi = m
        summary.append({"model": name, "lang": lang, "mean": float(per_prompt.mean()), "ci_lo": lo, "ci_hi": hi,
                        "n_prompts": len(per_prompt)})
        per_neuron = acts.mean(dim=(0, 1))
        detail += [{"model": name, "lang": lang, "layer": l, "neuron": i, "mean": float(m)}
                   for (l, i), m in zip(neurons, per_neuron.tolist())]
    summary_df = pd.DataFrame(summary, columns=["model", "lang", "mean", "ci_lo", "ci_hi", "n_prompts"])
    first = summary_df[summary_df.model == next(iter(models))].set_index("lang")["mean"]
    en = float(first.get("en", float("nan")))
    ratio = [{"lang": lang, "ratio": float(first[lang] / en) if en > 0 else float("nan")} for lang in first.index]
    for r in ratio:  # the same number under the name interp.crosslingual.multilinguality.dual_multilinguality reads
        r["key_ratio"] = r["ratio"]
    meta = {"models": list(models), "neurons": neurons, "n_new_tokens": n_new_tokens, "positions": positions,
            "n_boot": n_boot,
            "seed": seed, "n_prompts": {k: len(v) for k, v in langs.items()}}
    return KeyActivations(summary_df, pd.DataFrame(detail, columns=["model", "lang", "layer", "neuron", "mean"]),
                          pd.DataFrame(ratio, columns=["lang", "ratio", "key_ratio"]), meta)


__all__ = ["key_activations", "KeyActivations"]
