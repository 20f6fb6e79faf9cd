"""Run-to-run spread: one study repeated on the embedded model built from several recipe seeds.

The embedded default model is trained here, so its figures depend on the seed of its recipe
(corpus order, init, batch order). A result quoted from one build may be one lucky run; this module
runs the same study (same run config, same DPO, same prompts) on the models of several seeds and
reports each headline figure as its mean and range over the seeds (issue 17).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from interp.app.run_config import RunConfig
from interp.core.artifacts import InputError, make_manifest, read_json, write_csv, write_json

#: headline figure -> what it is (the README quotes these as mean and range over seeds)
HEADLINES: dict[str, str] = {
    "probe_test_accuracy": "English probe accuracy on its held-out test split",
    "probe_margin_over_random_init": "probe test accuracy minus the same probe on a random-init copy of the model",
    "kept_neurons": "candidate value vectors (of neurons.top_k) that pass the activation filter",
    "emt_before": "mean EMT before DPO (Table 2: every language, English included)",
    "emt_change": "mean EMT change after English DPO, after - before (Table 2: every language, English included)",
    "toxprob_change": "mean ToxProb change after English DPO (Table 2: every language, English included)",
    "emt_change_non_english": "mean EMT change over the non-English languages",
    "toxprob_change_non_english": "mean ToxProb change over the non-English languages",
    "languages_toxprob_falls": "non-English languages whose ToxProb falls after DPO",
    "languages_emt_falls": "non-English languages whose mean EMT falls after DPO",
    "distinct_2_change_pct": "mean distinct-2 change after DPO, % of before",
    "heldout_lm_loss_change": "held-out LM loss change on neutral text at the end of DPO (nats/token)",
    "key_activation_change": "mean key activation of the kept neurons over languages, DPO - base",
    "sweep_effect": "mean greedy toxicity at the most negative offset minus at offset 0 (all languages)",
    "retrieval_mean": "en<->X top-1 retrieval: mean over languages, both directions and the layers of "
                      "retrieval.layer_range (all by default)",
    "retrieval_best_layer": "en<->X top-1 retrieval of the best layer of all (mean over languages and directions)",
    "correlation_r": "Pearson r of retrieval accuracy vs %EMT reduction across the non-English languages",
    "correlation_p_below_0_05": "1 when that correlation's permutation p < 0.05, else 0 (its mean: the share of seeds)",
}


def headline_figures(summary: dict[str, Any], retrieval_per_layer: pd.DataFrame) -> dict[str, float]:
    """Return the :data:`HEADLINES` of one finished run from its ``summary.json`` and its per-layer retrieval table."""
    from interp.crosslingual.retrieval import best_layer

    probe = summary["probe"]
    table2 = {r["metric"]: r for r in summary["table2"]}
    per_lang = pd.DataFrame(summary["per_language"])
    other = per_lang[~per_lang["lang"].isin(["en", "all"])]  # "all" pools the languages
    keys = pd.DataFrame(summary["key_activations"])
    by_model = keys.groupby("model")["mean"].mean()
    sweep = pd.DataFrame(summary["intervention_sweep"])
    corr = [r for r in summary["correlation"] if r["signal"] == "retrieval_acc" and r["outcome"] == "emt_reduction_pct"]
    retr = pd.DataFrame(summary["retrieval"])
    dpo = summary.get("dpo") or []
    nan = float("nan")
    random_acc = probe.get("random_init.test", {}).get("accuracy")
    out = {
        "probe_test_accuracy": probe["test"]["accuracy"],
        "probe_margin_over_random_init": probe["test"]["accuracy"] - random_acc if random_acc is not None else nan,
        "kept_neurons": summary["neurons"]["kept"],
        "emt_before": table2["emt"]["before"],
        "emt_change": table2["emt"]["change"],
        "toxprob_change": table2["toxprob"]["change"],
        "emt_change_non_english": float(other["emt_change"].mean()),
        "toxprob_change_non_english": float(other["toxprob_change"].mean()),
        "languages_toxprob_falls": int((other["toxprob_change"] < 0).sum()),
        "languages_emt_falls": int((other["emt_change"] < 0).sum()),
        "distinct_2_change_pct": table2["distinct_2"]["change_pct"],
        "heldout_lm_loss_change": dpo[-1]["heldout_lm_loss_delta"] if dpo else nan,
        "key_activation_change": by_model["dpo"] - by_model["base"] if {"dpo", "base"} <= set(by_model.index) else nan,
        "sweep_effect": nan,
        "retrieval_mean": float(retr["retrieval_acc"].mean()) if len(retr) else nan,
        "retrieval_best_layer": best_layer(retrieval_per_layer).figure if len(retrieval_per_layer) else nan,
        "correlation_r": corr[0]["pearson_r"] if corr and corr[0]["pearson_r"] is not None else nan,
        "correlation_p_below_0_05": float(corr[0]["perm_p"] < 0.05) if corr and corr[0]["perm_p"] is not None else nan,
    }
    if len(sweep):
        means = sweep.groupby("offset")["mean_toxicity"].mean()
        if 0.0 in means.index and means.index.min() < 0:
            out["sweep_effect"] = means[means.index.min()] - means[0.0]
    return {k: float(v) for k, v in out.items()}


def spread(figures: pd.DataFrame) -> pd.DataFrame:
    """Return one row per figure (column of ``figures``, one row per seed): n, mean, min, max over the seeds."""
    stats = figures.drop(columns="seed").agg(["count", "mean", "min", "max"]).T
    stats = stats.rename(columns={"count": "n_seeds"}).rename_axis("figure").reset_index()
    stats["n_seeds"] = stats["n_seeds"].astype(int)
    stats["what"] = stats["figure"].map(HEADLINES)
    return stats


def language_spread(per_language: pd.DataFrame) -> pd.DataFrame:
    """Return per language: mean, min and max over seeds of the ToxProb and EMT changes, and the seeds where each falls."""
    g = per_language[per_language["lang"] != "all"].groupby("lang")
    out = g[["toxprob_change", "emt_change"]].agg(["mean", "min", "max"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds_toxprob_falls"] = g["toxprob_change"].apply(lambda s: int((s < 0).sum()))
    out["seeds_emt_falls"] = g["emt_change"].apply(lambda s: int((s < 0).sum()))
    out["n_seeds"] = g.size()
    return out.reset_index()


def run_seed(config: RunConfig) -> int:
    """Return the recipe seed of the embedded model ``config`` studies (``model.recipe_seed``, else the recipe's own)."""
    from interp.default_model.recipe import named_recipe
    from interp.model.loading import DEFAULT_MODEL_NAMES

    if config.model.name not in DEFAULT_MODEL_NAMES:
        raise InputError(f"the seed spread varies the embedded model's recipe seed; model.name is "
                         f"{config.model.name!r}. Use --preset demo or a config with model.name: default")
    if config.model.recipe_seed is not None:
        return config.model.recipe_seed
    return named_recipe(config.model.recipe)[1].seed


def seed_config(config: RunConfig, seed: int) -> RunConfig:
    """Return ``config`` with the embedded model built from recipe seed ``seed`` (unchanged for the run's own seed)."""
    if seed == run_seed(config):
        return config
    return dataclasses.replace(config, model=dataclasses.replace(config.model, recipe_seed=seed))


def seed_run_dir(run_dir: Path, config: RunConfig, seed: int) -> Path:
    """Return where seed ``seed``'s study lives: the run itself for the run's own seed, else under experiments/seeds."""
    return run_dir if seed == run_seed(config) else run_dir / "experiments" / "seeds" / f"seed-{seed}"


def run_seed_spread(config: RunConfig, run_dir: str | Path, seeds: list[int], *,
                    run: Callable[[RunConfig, Path], Any], log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the study once per recipe seed (``run(config, run_dir)``; cached stages are reused, a stage of
    other inputs is redone) and write the figures per seed, their spread and the per-language spread to
    ``run_dir/experiments/seeds``; return those paths. Figures are read through :func:`open_run`, which
    checks every table against the stage that wrote it."""
    from interp.app.pipeline import open_run

    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise InputError(f"--seeds needs at least two distinct seeds, got {seeds}")
    run_dir = Path(run_dir)
    run_seed(config)  # a model without a recipe is refused before anything runs
    rows, langs, provenance = [], [], {}
    for s in seeds:
        d = seed_run_dir(run_dir, config, s)
        log(f"seed {s}: study in {d}")
        run(seed_config(config, s), d)
        handle = open_run(d)
        summary = read_json(handle.artifact("report", "summary"))
        rows.append({"seed": s, **headline_figures(summary, handle.table("retrieval_per_layer"))})
        pl = pd.DataFrame(summary["per_language"])[["lang", "toxprob_change", "emt_change"]]
        langs.append(pl.assign(seed=s))
        provenance[str(s)] = {"run_dir": str(d), "model": summary["model"]["name"],
                              "model_fingerprint": summary["model"]["fingerprint"],
                              "run_manifest_created": read_json(d / "manifest.json").get("created")}
    figures = pd.DataFrame(rows)
    out = run_dir / "experiments" / "seeds"
    paths = {"figures": out / "seed_figures.csv", "spread": out / "seed_spread.csv",
             "languages": out / "seed_languages.csv", "manifest": out / "seeds.json"}
    write_csv(paths["figures"], figures)
    write_csv(paths["spread"], spread(figures))
    write_csv(paths["languages"], language_spread(pd.concat(langs, ignore_index=True)))
    manifest = make_manifest(kind="xdetox-seed-spread", config=config, seed=config.seed,
                             model_id=str(config.model.name))
    write_json(paths["manifest"], {"manifest": manifest, "seeds": seeds, "per_seed": provenance})
    return paths


__all__ = ["HEADLINES", "headline_figures", "language_spread", "run_seed", "run_seed_spread", "seed_config",
           "seed_run_dir", "spread"]
