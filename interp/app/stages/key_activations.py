"""Stage 5: key activations of the toxic neurons before and after tuning (paper Fig. 3)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import write_csv

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_key_activations(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.neurons.key_activations import key_activations

    c = pipe.config.key_activations
    prompts = {lang: [p.text for p in ps] for lang, ps in pipe.key_prompts().items()}
    tuned = pipe.tuned_model()
    res = key_activations({"base": pipe.base_model(), "dpo": tuned}, pipe.group_neurons(), prompts,
                          n_new_tokens=c.n_new_tokens, seed=pipe.config.seed, progress=pipe.progress)
    write_csv(d / "key_activations.csv", res.summary)
    write_csv(d / "key_activations_per_neuron.csv", res.per_neuron)
    write_csv(d / "key_ratio.csv", res.ratio_to_english)
    s = res.summary
    pre, post = s[s["model"] == "base"]["mean"].mean(), s[s["model"] == "dpo"]["mean"].mean()
    return (f"mean toxic-neuron activation over languages {pre:+.4f} (base) -> {post:+.4f} (DPO)",
            {"summary": pipe.rel(d / "key_activations.csv"), "per_neuron": pipe.rel(d / "key_activations_per_neuron.csv"),
             "ratio": pipe.rel(d / "key_ratio.csv")})
