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
from interp.cli import main

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
