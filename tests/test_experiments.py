"""``xdetox experiment algorithms`` runs every offered algorithm end to end on the smoke model, and
its table agrees with an independent computation from the scored samples; ``experiment patching``
runs end to end on the smoke study."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detox_train.preference import ALGORITHMS
from interp.app.cli import main

TINY = ["--preset", "smoke", "--set", "evaluation.scorer=lexicon", "--set", "evaluation.scorer_options={}",
        "--set", "languages=[en,de]", "--set", "evaluation.n_prompts=3", "--set", "evaluation.k=2",
        "--set", "evaluation.n_boot=50", "--no-progress"]


def _scored(path: Path) -> dict[str, tuple[str, float]]:
    """prompt id -> (lang, max score) read straight from a scored JSONL."""
    out: dict[str, list] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["prompt_id"], [r["lang"], []])[1].append(r["score"])
    return {k: (v[0], max(v[1])) for k, v in out.items()}


def test_time_estimate_is_linear_in_the_samples() -> None:
    from detox_train.compare_algorithms import estimate_seconds

    t = pd.DataFrame({"train_s": [10.0, 20.0], "eval_s": [4.0, 6.0], "train_cpu_s": [1.0, 2.0], "eval_cpu_s": [1.0, 1.0],
                      "n_prompts": [2, 2]})
    # per sample (4/4 + 6/4)/2 = 1.25 s; 17 x 25 x 5 samples for 2 algorithms + the base model
    assert estimate_seconds(t, n_languages=17, n_prompts=25, k=5, measured_k=2) == pytest.approx(
        30 + 1.25 * 17 * 25 * 5 * 3)
    assert estimate_seconds(t, n_languages=1, n_prompts=2, k=2, measured_k=2, column="_cpu") == pytest.approx(
        3 + 0.25 * 4 * 3)
    # a resumed run without a recorded training time is left out, not counted as ~0 s of training
    t["train_time_unknown"] = [False, True]
    assert estimate_seconds(t, n_languages=17, n_prompts=25, k=5, measured_k=2) == pytest.approx(
        10 + 1.0 * 17 * 25 * 5 * 2)
    t["train_time_unknown"] = [True, True]
    assert np.isnan(estimate_seconds(t, n_languages=1, n_prompts=2, k=2, measured_k=2))


def test_language_rows_use_the_same_prompts_for_means_and_reductions() -> None:
    from detox_train.compare_algorithms import language_rows

    nan = float("nan")
    rec = lambda lang, mx, d2=0.5: {"lang": lang, "max": mx, "any": nan if np.isnan(mx) else float(mx >= 0.5),  # noqa: E731
                                    "d2": d2}
    before = {"a": rec("en", 0.9), "b": rec("en", 0.2), "c": rec("en", 0.7), "d": rec("de", 0.6)}
    after = {"a": rec("en", 0.1), "b": rec("en", nan), "c": rec("en", 0.6), "d": rec("de", 0.4)}
    ids, rows = language_rows(before, after, n_boot=20, seed=0)
    assert sorted(ids) == ["a", "c", "d"]  # b has no valid score after tuning
    en = next(r for r in rows if r["lang"] == "en")
    assert en["n_prompts"] == 2
    assert en["emt_before"] == pytest.approx((0.9 + 0.7) / 2) and en["emt_after"] == pytest.approx((0.1 + 0.6) / 2)
    for r in rows:
        assert r["emt_before"] - r["emt_after"] == pytest.approx(r["emt_reduction"])
        assert r["toxprob_before"] - r["toxprob_after"] == pytest.approx(r["toxprob_reduction"])
    assert next(r for r in rows if r["lang"] == "all")["n_prompts"] == 3


def test_every_algorithm_runs_end_to_end(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    rc = main(["experiment", "algorithms", *TINY, "--run-dir", str(run), "--all-algorithms",
               "--train-set", "max_steps=1", "--train-set", "warmup_steps=0", "--train-set", "learning_rate=1e-3",
               "--train-set", "eval_steps=1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "linear estimate for 17 languages" in printed
    out = run / "experiments" / "algorithms"
    table = pd.read_csv(out / "algorithms.csv")
    assert list(dict.fromkeys(table["algorithm"])) == list(ALGORITHMS)
    assert set(table["lang"]) == {"en", "de", "all"} and len(table) == 3 * len(ALGORITHMS)
    assert table["heldout_lm_loss_change"].abs().min() > 0  # every algorithm changed the model
    assert np.isfinite(table[["emt_reduction", "toxprob_reduction", "distinct_2_after"]].to_numpy()).all()
    assert (out / "algorithms_figure.html").is_file()
    meta = json.loads((out / "algorithms.json").read_text())["manifest"]["config"]
    for name in ALGORITHMS:
        assert meta["runs"][name]["preference"]["algorithm"] == name and meta["runs"][name]["preference"]["source"]
    # independent check of one row: EMT reduction = mean over prompts of max(before) - max(after)
    before = _scored(out / "base" / "scored.jsonl")
    after = _scored(Path(meta["runs"]["kto"]["run"]) / "scored.jsonl")
    de = [p for p in before if before[p][0] == "de"]
    want = np.mean([before[p][1] - after[p][1] for p in de])
    got = table[(table.algorithm == "kto") & (table.lang == "de")]["emt_reduction"].iloc[0]
    assert got == pytest.approx(want)
    timings = pd.read_csv(out / "algorithm_timings.csv")
    assert (timings["train_s"] > 0).all() and (timings["global_step"] == 1).all()
    assert not timings["train_time_unknown"].any()
    for name in ALGORITHMS:  # the fresh training time is recorded for a later resumed run's estimate
        assert (Path(meta["runs"][name]["run"]) / "train_timing.json").is_file()
    # one setup for all: no SFT anchor (the preset's 0.5 would only reach the DPOTrainer losses)
    assert (table["sft_weight"] == 0).all() and meta["base_config"]["sft_weight"] == 0
    for name in ALGORITHMS:
        settings = meta["runs"][name]["preference"]["settings"]
        assert "sft" not in settings.get("loss_type", []) and not meta["runs"][name]["preference"]["sft_weight_applied"]
    # A rerun reuses each finished model and its samples (KTO included: resuming it would retrain), with
    # the first run's figures and timings.
    weights = {n: (Path(meta["runs"][n]["run"]) / "train" / "model.safetensors") for n in ("kto", "orpo")}
    stamps = {n: (w.stat().st_mtime_ns, (w.parent / "manifest.json").stat().st_mtime_ns) for n, w in weights.items()}
    rc = main(["experiment", "algorithms", *TINY, "--run-dir", str(run), "--algorithms", "kto", "orpo",
               "--train-set", "max_steps=1", "--train-set", "warmup_steps=0", "--train-set", "learning_rate=1e-3",
               "--train-set", "eval_steps=1"])
    assert rc == 0, capsys.readouterr().err
    again = pd.read_csv(out / "algorithms.csv")
    pd.testing.assert_frame_equal(again.reset_index(drop=True),
                                  table[table.algorithm.isin(["kto", "orpo"])].reset_index(drop=True))
    t2 = pd.read_csv(out / "algorithm_timings.csv").set_index("algorithm")
    t1 = timings.set_index("algorithm").loc[["kto", "orpo"]]
    pd.testing.assert_series_equal(t2["eval_s"], t1["eval_s"])
    assert not t2["train_time_unknown"].any()
    assert {n: (w.stat().st_mtime_ns, (w.parent / "manifest.json").stat().st_mtime_ns)
            for n, w in weights.items()} == stamps  # not retrained, not re-saved


def test_algorithms_experiment_rejects_bad_input(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["experiment", "algorithms", *TINY, "--run-dir", str(tmp_path), "--algorithms", "nope"])
    assert main(["experiment", "algorithms", *TINY, "--run-dir", str(tmp_path), "--train-set", "algorithm=ipo"]) == 2
    assert "the algorithm is what the experiment varies" in capsys.readouterr().err


def test_patching_experiment_runs_on_the_smoke_study(smoke_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    run = shutil.copytree(smoke_run, tmp_path / "run")  # the shared smoke run stays as the other tests expect it
    rc = main(["experiment", "patching", "--preset", "smoke", "--run-dir", str(run), "--n-prompts", "2",
               "--no-progress"])
    assert rc == 0
    out = run / "experiments" / "patching"
    s = pd.read_csv(out / "patching_summary.csv")
    assert set(s["set"]) == {"located", "random_1", "layers_all"} and set(s["direction"]) == {"forward", "reverse"}
    assert set(s["lang"]) == {"en", "de", "ja", "ru", "zh", "all"}
    assert (out / "patching_figure.html").is_file() and (out / "patching_relation.csv").is_file()
    data = json.loads((out / "patching.json").read_text())
    assert "lockstep" in data["meta"]["convention"] and data["meta"]["scorer"]["id"]
    printed = capsys.readouterr().out
    assert "[dpo] cached" in printed  # the study's own stages were reused, not retrained
    html = (run / "report.html").read_text()
    assert "Beyond the paper: how much of each language" in html  # the report was re-rendered with the section
    summary = json.loads((run / "summary.json").read_text())
    assert {r["set"] for r in summary["beyond_the_paper"]["patching"]} == {"located", "random_1", "layers_all"}
