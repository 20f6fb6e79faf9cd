"""The paper's settings are one flag away: activation-filter and key-activation prompts, the probe split."""
from __future__ import annotations

from pathlib import Path

from interp.pipeline import Pipeline
from interp.run_config import load_run_config


def test_paper_preset_filters_on_1000_english_rtplx_prompts(tmp_path: Path, data_root: Path) -> None:
    from interp.data import load_rtplx

    n_en = sum(1 for p in load_rtplx(data_root, ["en"]))
    pipe = Pipeline(load_run_config(preset="paper", overrides={"data_root": str(data_root)}), tmp_path,
                    log=lambda _m: None)
    got = pipe.filter_prompts()
    assert len(got) == min(1000, n_en) and all(p.lang == "en" for p in got)
    assert len({p.id for p in got}) == len(got)
    # The old hard-coded choice (eval split, toxicity >= 3) gives far fewer.
    old = Pipeline(load_run_config(preset="paper", overrides={"data_root": str(data_root), "neurons.filter_split": "eval",
                                                               "neurons.filter_min_toxicity": 3.0}), tmp_path,
                   log=lambda _m: None).filter_prompts()
    assert len(old) < len(got) and all((p.toxicity or 0) >= 3.0 for p in old)


def test_key_activation_prompts_are_not_capped_at_the_eval_split(tmp_path: Path, data_root: Path) -> None:
    from interp.data import load_rtplx, rtplx_split

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
