"""The paper's settings are one flag away: activation-filter and key-activation prompts, the probe split."""
from __future__ import annotations

from pathlib import Path

from interp.app.pipeline import Pipeline
from interp.app.run_config import load_run_config


def test_paper_preset_filters_on_1000_english_rtplx_prompts(tmp_path: Path, data_root: Path) -> None:
    from interp.data.rtplx import load_rtplx

    n_en = sum(1 for p in load_rtplx(data_root, ["en"]))
    pipe = Pipeline(load_run_config(preset="paper", overrides={"data_root": str(data_root)}), tmp_path,
                    log=lambda _m: None)
    got = pipe.filter_prompts()
    assert len(got) == min(1000, n_en) and all(p.lang == "en" for p in got)
    assert len({p.id for p in got}) == len(got)
    # The old hard-coded choice (eval split, toxicity >= 3) gives far fewer.
    before = {"data_root": str(data_root), "neurons.filter_split": "eval", "neurons.filter_min_toxicity": 3.0}
    old = Pipeline(load_run_config(preset="paper", overrides=before), tmp_path, log=lambda _m: None).filter_prompts()
    assert len(old) < len(got) and all((p.toxicity or 0) >= 3.0 for p in old)


def test_key_activation_prompts_are_not_capped_at_the_eval_split(tmp_path: Path, data_root: Path) -> None:
    from interp.data.rtplx import load_rtplx
    from interp.data.split import rtplx_split

    langs = ["en", "de"]
    cfg = {"data_root": str(data_root), "languages": "[en, de]"}
    paper = Pipeline(load_run_config(preset="paper", overrides=cfg), tmp_path).key_prompts()
    evals = Pipeline(load_run_config(preset="paper", overrides={**cfg, "key_activations.split": "eval"}),
                     tmp_path).key_prompts()
    every = load_rtplx(data_root, langs)
    for lang in langs:
        n_all = sum(1 for p in every if p.lang == lang)
        n_eval = sum(1 for p in rtplx_split(every, "eval") if p.lang == lang)
        assert len(paper[lang]) == min(1000, n_all) > n_eval == len(evals[lang])


def _write_jigsaw(tmp_path: Path) -> tuple[Path, Path, int]:
    import csv

    toxic = ["you are a stupid idiot", "what the hell is wrong with you", "stupid idiot"]
    clean = ["the quick brown fox", "I want to go home now", "this is a nice day", "Ich will nach Hause"]
    train = tmp_path / "train.csv"
    with train.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "comment_text", "toxic", "severe_toxic"])
        for i in range(40):
            t = i % 3 == 0
            w.writerow([f"tr{i}", f"{(toxic if t else clean)[i % 3]} {i}", int(t), 0])
    test = tmp_path / "test.csv"
    labels = tmp_path / "test_labels.csv"
    with test.open("w", newline="", encoding="utf-8") as f, labels.open("w", newline="", encoding="utf-8") as g:
        w, v = csv.writer(f), csv.writer(g)
        w.writerow(["id", "comment_text"])
        v.writerow(["id", "toxic", "severe_toxic"])
        for i in range(12):
            t = i % 2 == 0
            w.writerow([f"te{i}", f"{(toxic if t else clean)[i % 3]} x{i}"])
            v.writerow([f"te{i}", -1 if i < 2 else int(t), 0])  # Kaggle's unscored rows are -1
    return train, test, 10


def test_probe_trains_on_a_jigsaw_train_csv_and_tests_on_the_test_csv(tmp_path: Path, tiny_dirs) -> None:
    from interp.model.loading import load_model
    from probes.train import load_jigsaw_test, load_probe_data, train_probe

    train, test, n_scored = _write_jigsaw(tmp_path)
    bridge = load_model(str(tiny_dirs["gpt2"]))
    _, m = train_probe(bridge, load_probe_data("jigsaw", jigsaw_path=train), test=load_jigsaw_test(test),
                       solver="logreg",
                       cache_dir=tmp_path / "c", progress=False)
    assert m["n_train"] == 40 and m["n_test"] == n_scored and m["test"]["n"] == n_scored
    assert m["test_source"] == "jigsaw" and m["dataset"] == "jigsaw"
    # Without a test file, the paper's 90/10 split of the train file.
    _, m = train_probe(bridge, load_probe_data("jigsaw", jigsaw_path=train), test_fraction=0.1,
                       solver="logreg",
                       cache_dir=tmp_path / "c", progress=False)
    assert m["n_train"] + m["n_test"] == 40 and 1 <= m["n_test"] <= 9 and m["test_fraction"] == 0.1


def test_paper_preset_probe_split_and_seed() -> None:
    c = load_run_config(preset="paper").probe
    assert c.test_fraction == 0.1 and c.seed == 99
    c = load_run_config(preset="demo").probe
    assert c.seed is None  # other presets follow the run seed
