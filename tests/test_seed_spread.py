"""Run-to-run spread (issue 17): a recipe seed is another embedded model, keyed and cached on its own;
``xdetox experiment seeds`` reports each headline figure as mean and range, checked here against an
independent computation from the per-seed summaries."""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interp.app.cli import main
from interp.app.pipeline import Pipeline, validate_config
from interp.app.run_config import load_run_config
from interp.app.seed_spread import HEADLINES, headline_figures, run_seed_spread, seed_config, seed_run_dir
from interp.core.configio import ConfigError
from interp.default_model.build import resolve_preset
from interp.default_model.recipe import RECIPES, named_recipe, recipe_hash


def test_a_recipe_seed_is_another_model_and_the_own_seed_is_the_recipe(data_root) -> None:
    own = RECIPES["smoke"].seed
    name, recipe = named_recipe("smoke", own + 1)
    assert name == "smoke" and recipe.seed == own + 1
    assert dataclasses.replace(recipe, seed=own) == RECIPES["smoke"]
    assert recipe_hash(recipe) != recipe_hash(RECIPES["smoke"])
    base_dir = resolve_preset("smoke", data_root)[2]
    assert resolve_preset("smoke", data_root, own)[2] == base_dir
    assert resolve_preset("smoke", data_root, own + 1)[2] != base_dir
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ConfigError, match="recipe seed"):
            named_recipe("smoke", bad)


def test_the_model_stage_key_follows_the_recipe_seed(tmp_path: Path) -> None:
    cfg = load_run_config(preset="smoke")
    own = named_recipe(cfg.model.recipe)[1].seed
    keys = {}
    for seed in (None, own, own + 1):
        c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, recipe_seed=seed))
        keys[seed] = Pipeline(c, tmp_path / str(seed), progress=False).stage_key("model")
    assert keys[None] != keys[own + 1]
    assert keys[None] == keys[own]  # the recipe's own seed written out is the same model: same key
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="gpt2", recipe_seed=1))
    with pytest.raises(ConfigError, match="model.recipe_seed: only the embedded model"):
        validate_config(bad)


def test_seed_config_and_run_dirs(tmp_path: Path) -> None:
    cfg = load_run_config(preset="smoke")
    own = named_recipe(cfg.model.recipe)[1].seed
    assert seed_config(cfg, own) is cfg  # the recipe's own seed: the run itself
    assert seed_config(cfg, own + 2).model.recipe_seed == own + 2
    assert seed_run_dir(tmp_path, cfg, own) == tmp_path
    assert seed_run_dir(tmp_path, cfg, own + 2) == tmp_path / "experiments" / "seeds" / f"seed-{own + 2}"
    with pytest.raises(Exception, match="model.name is 'gpt2'"):
        seed_config(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="gpt2")), 1)
    # A run made with seed 5: seed 5 is that run, the recipe's own seed goes under experiments/seeds.
    five = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, recipe_seed=5))
    assert seed_run_dir(tmp_path, five, 5) == tmp_path and seed_config(five, 5) is five
    assert seed_run_dir(tmp_path, five, own) == tmp_path / "experiments" / "seeds" / f"seed-{own}"
    assert seed_config(five, own).model.recipe_seed == own


def _perturbed(summary: dict, seed: int) -> dict:
    """A copy of ``summary`` whose figures differ by seed (as another model's run would)."""
    s = copy.deepcopy(summary)
    s["neurons"]["kept"] += seed
    s["probe"]["test"]["accuracy"] += 0.01 * seed
    for r in s["table2"]:
        if r["metric"] == "emt":
            r["before"], r["change"] = 0.5 + 0.01 * seed, -0.02 * seed
    for r in s["per_language"]:
        r["toxprob_change"] = (-0.1 if (sum(map(ord, r["lang"])) + seed) % 2 else 0.05) * (seed + 1)
        r["emt_change"] = -0.01 * seed - 0.001 * len(r["lang"])
    for r in s["key_activations"]:
        if r["model"] == "dpo":
            r["mean"] -= 0.02 * seed
    for r in s["retrieval"]:
        r["retrieval_acc"] += 0.1 * seed
    # a sweep with known means: offset 0 -> 0.4, offset -2 -> 0.4 - 0.05 * seed (two languages each)
    s["intervention_sweep"] = [{"offset": o, "lang": lang, "mean_toxicity": t, "n": 2}
                               for o, ts in ((0.0, (0.3, 0.5)), (-2.0, (0.3 - 0.05 * seed, 0.5 - 0.05 * seed)))
                               for lang, t in zip(("de", "ja"), ts)]
    for r in s["correlation"]:
        if r["signal"] == "retrieval_acc" and r["outcome"] == "emt_reduction_pct":
            r["pearson_r"], r["perm_p"] = 0.1 * seed, (0.01 if seed == 2 else 0.5)
    return s


def test_spread_agrees_with_an_independent_computation(smoke_run: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(load_run_config(preset="smoke"))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, recipe_seed=1))  # the run's own seed is 1
    run_dir = tmp_path / "run"
    base = json.loads((smoke_run / "summary.json").read_text())
    layers = pd.read_csv(smoke_run / "stages" / "retrieval" / "retrieval_per_layer.csv")
    seen: dict[int, object] = {}

    def fake_run(c, d: Path) -> None:  # stands in for run_pipeline: a finished run whose figures depend on the seed
        seed = c.model.recipe_seed
        seen[seed] = d
        shutil.copytree(smoke_run, d, dirs_exist_ok=True)
        layers.assign(acc_mean=layers["acc_mean"] + 0.05 * seed).to_csv(
            d / "stages" / "retrieval" / "retrieval_per_layer.csv", index=False)
        (d / "summary.json").write_text(json.dumps(_perturbed(base, seed)))

    paths = run_seed_spread(cfg, run_dir, [0, 1, 2], run=fake_run, log=lambda _: None)
    assert seen == {0: run_dir / "experiments" / "seeds" / "seed-0", 1: run_dir,  # the run itself is seed 1
                    2: run_dir / "experiments" / "seeds" / "seed-2"}
    figures = pd.read_csv(paths["figures"])
    spread = pd.read_csv(paths["spread"]).set_index("figure")
    assert set(spread.index) == set(HEADLINES)
    # Independent: each figure recomputed from the per-seed inputs by hand.
    sums = {s: _perturbed(base, s) for s in (0, 1, 2)}
    kept = [sums[s]["neurons"]["kept"] for s in (0, 1, 2)]
    non_en = lambda s: [r for r in sums[s]["per_language"] if r["lang"] not in ("en", "all")]  # noqa: E731
    falls = [sum(1 for r in non_en(s) if r["toxprob_change"] < 0) for s in (0, 1, 2)]
    emt_non_en = [np.mean([r["emt_change"] for r in non_en(s)]) for s in (0, 1, 2)]
    key_change = [np.mean([r["mean"] for r in sums[s]["key_activations"] if r["model"] == "dpo"])
                  - np.mean([r["mean"] for r in sums[s]["key_activations"] if r["model"] == "base"]) for s in (0, 1, 2)]
    retr = [np.mean([r["retrieval_acc"] for r in sums[s]["retrieval"]]) for s in (0, 1, 2)]
    best = [max(layers.groupby("layer")["acc_mean"].mean() + 0.05 * s) for s in (0, 1, 2)]
    expected = {"kept_neurons": kept, "languages_toxprob_falls": falls, "emt_change_non_english": emt_non_en,
                "key_activation_change": key_change, "retrieval_mean": retr, "retrieval_best_layer": best,
                "emt_before": [0.5, 0.51, 0.52], "emt_change": [0.0, -0.02, -0.04],
                "sweep_effect": [0.0, -0.05, -0.1], "correlation_r": [0.0, 0.1, 0.2],
                "correlation_p_below_0_05": [0.0, 0.0, 1.0]}
    for name, values in expected.items():
        assert figures[name].tolist() == pytest.approx(values), name
        assert spread.loc[name, ["mean", "min", "max"]].tolist() == pytest.approx(
            [np.mean(values), min(values), max(values)]), name
        assert spread.loc[name, "n_seeds"] == 3
    langs = pd.read_csv(paths["languages"]).set_index("lang")
    assert "all" not in langs.index
    for lang in langs.index:
        ch = [next(r["toxprob_change"] for r in sums[s]["per_language"] if r["lang"] == lang) for s in (0, 1, 2)]
        assert langs.loc[lang, "toxprob_change_mean"] == pytest.approx(np.mean(ch))
        assert langs.loc[lang, "seeds_toxprob_falls"] == sum(c < 0 for c in ch)
    meta = json.loads(paths["manifest"].read_text())
    assert meta["seeds"] == [0, 1, 2] and set(meta["per_seed"]) == {"0", "1", "2"}
    assert meta["per_seed"]["1"]["model_fingerprint"] == base["model"]["fingerprint"]


def test_headline_figures_of_the_smoke_run(smoke_run: Path) -> None:
    summary = json.loads((smoke_run / "summary.json").read_text())
    layers = pd.read_csv(smoke_run / "stages" / "retrieval" / "retrieval_per_layer.csv")
    f = headline_figures(summary, layers)
    assert f["kept_neurons"] == summary["neurons"]["kept"]
    assert f["probe_margin_over_random_init"] == pytest.approx(
        summary["probe"]["test"]["accuracy"] - summary["probe"]["random_init.test"]["accuracy"])
    r = next(c for c in summary["correlation"] if c["signal"] == "retrieval_acc" and c["outcome"] == "emt_reduction_pct")
    assert f["correlation_r"] == pytest.approx(r["pearson_r"])


def test_seeds_experiment_refuses_bad_seeds(tmp_path: Path, capsys) -> None:
    base = ["experiment", "seeds", "--preset", "smoke", "--run-dir", str(tmp_path), "--no-progress"]
    assert main([*base, "--seeds", "1", "1"]) == 2
    assert "at least two distinct seeds" in capsys.readouterr().err
    assert main([*base, "--seeds", "0", "-1"]) == 2
    assert "--seeds must be >= 0" in capsys.readouterr().err
    assert main([*base, "--seeds", "0", "1", "--set", "model.name=gpt2"]) == 2
    assert "model.name is 'gpt2'" in capsys.readouterr().err
    assert not (tmp_path / "experiments").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)
