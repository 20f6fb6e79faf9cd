"""Issue 13 cold-review follow-ups: resumes keyed by the tokenization rule and prompt budget, the paper
probe split, the mean paired cosine signal, explicit gettext use in token languages, the CLI BOS flag."""
from __future__ import annotations

from pathlib import Path

import pytest

from detox_train.evaluate import generate
from interp.data import Prompt

GEN = dict(k=2, max_new_tokens=4, seed=3, progress=False, batch_size=4)


def _prompts() -> list[Prompt]:
    return [Prompt(id=f"t:en:{i}", lang="en", text=t, index=i, toxicity=None, source="test", group=i)
            for i, t in enumerate(["I want", "the quick brown fox jumps", "you are a"])]


@pytest.fixture(scope="module")
def tiny_lm(tiny_tokenizer):
    from tiny_models import make_model

    return make_model("gpt2", len(tiny_tokenizer), seed=0)


# ----------------------------------------------------------------------------- 1: generation resume
def test_generation_never_resumes_rows_of_another_bos_policy(tiny_lm, tiny_tokenizer, tmp_path) -> None:
    from interp.tokenization import set_bos_policy

    out = tmp_path / "s.jsonl"
    set_bos_policy(tiny_lm, "never")
    generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    set_bos_policy(tiny_lm, "always")
    try:
        with pytest.raises(ValueError, match="tokenization rule"):
            generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
        fresh = generate(tiny_lm, _prompts(), out_path=tmp_path / "b.jsonl", tokenizer=tiny_tokenizer, **GEN)
        set_bos_policy(tiny_lm, "never")
        old = generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
        assert [s.text for s in fresh] != [s.text for s in old]  # the policy really changes the samples
    finally:
        set_bos_policy(tiny_lm, "auto")


def test_generation_never_resumes_rows_of_another_prompt_budget(tiny_lm, tiny_tokenizer, tmp_path,
                                                               monkeypatch) -> None:
    import interp.tokenization as T

    out = tmp_path / "s.jsonl"
    generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    monkeypatch.setattr(T, "context_length", lambda model: 7)  # budget 3: the long prompt is cut
    with pytest.raises(ValueError, match="prompt budget"):
        generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)


# ----------------------------------------------------------------------------- 2: paper probe split
def test_probe_split_is_90_10_train_validation_and_an_extra_test_is_labelled(tmp_path: Path, tiny_dirs) -> None:
    from interp.loading import load_model
    from probes.train import train_probe
    from test_paper_settings import _write_jigsaw

    train, test, n_scored = _write_jigsaw(tmp_path)
    bridge = load_model(str(tiny_dirs["gpt2"]))
    _, m = train_probe(bridge, dataset="jigsaw", jigsaw_path=train, test_path=test, solver="paper",
                       cache_dir=tmp_path / "c", progress=False, seed=99)
    split = m["split"]
    # The whole train file is train + validation, 90/10 (the paper's split); the test CSV is the test set.
    assert split["train"] + split["validation"] == 40 and split["validation"] == 4 == m["val"]["n"]
    assert split["test"] == n_scored and "Jigsaw test" in split["test_role"]
    _, m = train_probe(bridge, dataset="jigsaw", jigsaw_path=train, test_fraction=0.1, solver="paper",
                       cache_dir=tmp_path / "c", progress=False, seed=99)
    split = m["split"]
    assert split["train"] + split["validation"] + split["test"] == 40
    assert split["validation"] == m["val"]["n"] and "extra" in split["test_role"] and "not in the paper" in split[
        "test_role"]


# ----------------------------------------------------------------------------- 3: mean paired cosine signal
def test_mean_paired_cosine_is_a_named_correlation_signal() -> None:
    import numpy as np
    import pandas as pd

    from interp.multilinguality import dual_multilinguality
    from interp.pipeline import correlate_available

    langs = ["en", "de", "fr", "ja", "ru", "zh"]
    acc = [0.1, 0.9, 0.2, 0.4, 0.3]
    cos = [0.8, 0.3, 0.5, 0.9, 0.1]
    drop = [10.0, 40.0, 25.0, 30.0, 5.0]
    retr = pd.DataFrame({"lang": langs[1:], "retrieval_acc": acc, "mean_paired_cosine": cos})
    value = pd.DataFrame({"lang": langs, "value_mass": np.linspace(0, 1, 6)})
    sig = dual_multilinguality(value_mass=value, retrieval=retr)
    assert "mean_paired_cosine" in sig.columns and np.isnan(sig.set_index("lang").loc["en", "mean_paired_cosine"])
    drops = pd.DataFrame({"lang": langs[1:], "emt_reduction_pct": drop})
    stats = correlate_available(sig, drops, outcomes=("emt_reduction_pct",), n_boot=50, n_perm=50, seed=0)
    by = stats.set_index("signal")["pearson_r"]
    assert by["mean_paired_cosine"] == pytest.approx(np.corrcoef(cos, drop)[0, 1])
    assert by["retrieval_acc"] == pytest.approx(np.corrcoef(acc, drop)[0, 1])
    assert by["mean_paired_cosine"] != pytest.approx(by["retrieval_acc"])
