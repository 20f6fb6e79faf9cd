"""Causal checks: the offset sweep on the toxic neurons (paper Table 5)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.core.artifacts import write_csv

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_intervention(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.neurons.interventions import intervention_sweep

    c = pipe.config.intervention
    if not c.enabled:
        write_csv(d / "sweep.csv", pd.DataFrame(columns=["offset", "lang", "mean_toxicity", "n"]))
        return "intervention sweep disabled", {"sweep": pipe.rel(d / "sweep.csv")}
    scorer = pipe.scorer()

    def score_fn(texts: list[str], lang: str) -> list[float]:
        res = scorer.score(texts, [lang] * len(texts))
        return [float("nan") if r.failed else float(r.score) for r in res]

    prompts = {lang: [p.text for p in ps] for lang, ps in pipe.eval_prompts(c.n_prompts, "eval", salt="sweep").items()}
    df = intervention_sweep(pipe.base_model(), pipe.group_neurons(), prompts, offsets=tuple(c.offsets),
                            score_fn=score_fn, max_new_tokens=c.max_new_tokens, seed=pipe.config.seed,
                            progress=pipe.progress)
    write_csv(d / "sweep.csv", df)
    by = df.groupby("offset")["mean_toxicity"].mean()
    hi, lo = by.index.max(), by.index.min()
    return (f"mean toxicity {by.loc[hi]:.3f} at offset {hi:g} -> {by.loc[lo]:.3f} at offset {lo:g}",
            {"sweep": pipe.rel(d / "sweep.csv")})
