"""Issue 13 cold-review follow-ups: resumes keyed by the tokenization rule and prompt budget, the paper
probe split, the mean paired cosine signal, explicit gettext use in token languages, the CLI BOS flag."""
from __future__ import annotations

from pathlib import Path

import pytest

from detox_train.evaluate import generate
from interp.data.records import Prompt

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
    from interp.model.tokenization import set_bos_policy

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
    import interp.model.tokenization as T

    out = tmp_path / "s.jsonl"
    generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    monkeypatch.setattr(T, "context_length", lambda model: 7)  # budget 3: the long prompt is cut
    with pytest.raises(ValueError, match="prompt budget"):
        generate(tiny_lm, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)


# ----------------------------------------------------------------------------- 2: paper probe split
def test_probe_split_is_90_10_train_validation_and_an_extra_test_is_labelled(tmp_path: Path, tiny_dirs) -> None:
    from interp.model.loading import load_model
    from probes.train import load_jigsaw_test, load_probe_data, train_probe
    from test_paper_settings import _write_jigsaw

    train, test, n_scored = _write_jigsaw(tmp_path)
    bridge = load_model(str(tiny_dirs["gpt2"]))
    _, m = train_probe(bridge, load_probe_data("jigsaw", jigsaw_path=train), test=load_jigsaw_test(test),
                       solver="paper",
                       cache_dir=tmp_path / "c", progress=False, seed=99)
    split = m["split"]
    # The whole train file is train + validation, 90/10 (the paper's split); the test CSV is the test set.
    assert split["train"] + split["validation"] == 40 and split["validation"] == 4 == m["val"]["n"]
    assert split["test"] == n_scored and "Jigsaw test" in split["test_role"]
    _, m = train_probe(bridge, load_probe_data("jigsaw", jigsaw_path=train), test_fraction=0.1,
                       solver="paper",
                       cache_dir=tmp_path / "c", progress=False, seed=99)
    split = m["split"]
    assert split["train"] + split["validation"] + split["test"] == 40
    assert split["validation"] == m["val"]["n"] and "extra" in split["test_role"] and "not in the paper" in split[
        "test_role"]


# ----------------------------------------------------------------------------- 3: mean paired cosine signal
def test_mean_paired_cosine_is_a_named_correlation_signal() -> None:
    import numpy as np
    import pandas as pd

    from interp.crosslingual.multilinguality import dual_multilinguality
    from interp.app.stages.correlation import correlate_available

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


# ----------------------------------------------------------------------------- 4: gettext in token languages
def _write_mo(path: Path, messages: dict[str, str]) -> None:
    """Write a little-endian GNU .mo catalog of ``messages`` (header entry included)."""
    import struct

    items = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    keys = [k.encode() for k, _ in items]
    vals = [v.encode() for _, v in items]
    n = len(items)
    koff, voff = 28, 28 + 8 * n
    data_start = 28 + 16 * n
    kdata, vdata, ktab, vtab = b"", b"", [], []
    for k in keys:
        ktab.append((len(k), data_start + len(kdata)))
        kdata += k + b"\0"
    vstart = data_start + len(kdata)
    for v in vals:
        vtab.append((len(v), vstart + len(vdata)))
        vdata += v + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, n, koff, voff, 0, 0)
    out += b"".join(struct.pack("<2I", *x) for x in ktab) + b"".join(struct.pack("<2I", *x) for x in vtab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + kdata + vdata)


def _locale(root: Path, de_word: str = "Fenster") -> Path:
    _write_mo(root / "de" / "LC_MESSAGES" / "app.mo", {"open the main window now": f"jetzt das {de_word} öffnen",
                                                      "close every open file here": "alle offenen Dateien schließen"})
    _write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", {"open the main window now": "ouvrir la fenêtre principale"})
    return root


def test_a_languages_gettext_strings_do_not_depend_on_the_other_languages(tmp_path) -> None:
    from interp.data.sources import gettext_monolingual, gettext_parallel

    loc = _locale(tmp_path / "loc")
    alone = gettext_monolingual(["en", "de"], loc)
    with_fr = gettext_monolingual(["en", "de", "fr"], loc)
    assert alone["de"] == with_fr["de"] == ["alle offenen Dateien schließen", "jetzt das Fenster öffnen"]
    assert alone["en"] == with_fr["en"]
    # (the parallel reader, by design, keeps only strings translated into every language)
    assert len(gettext_parallel(["en", "de", "fr"], loc)["de"]) == 1


def test_token_language_gettext_is_explicit_and_its_strings_are_in_the_stage_key(tmp_path, monkeypatch) -> None:
    import interp.app.pipeline as P
    from interp.app.run_config import load_run_config

    loc = _locale(tmp_path / "loc")
    monkeypatch.setattr(P, "GETTEXT_DIR", str(loc))
    # (the stages that build the default model read the catalogs too; hold their stat fingerprint still)
    monkeypatch.setattr(P.Pipeline, "gettext_fingerprint", lambda self: "fixed")
    langs = {"languages": ["en", "de", "fr"]}
    off = P.Pipeline(load_run_config(preset="smoke", overrides=langs), tmp_path / "a", log=lambda _m: None)
    on = P.Pipeline(load_run_config(preset="smoke", overrides={**langs, "neurons": {"token_language_gettext": True}}),
                    tmp_path / "b", log=lambda _m: None)
    assert off.config.neurons.token_language_gettext is False  # off unless asked for
    key_off, key_on = off.stage_key("neurons"), on.stage_key("neurons")
    assert key_off != key_on
    from interp.data import sources

    _locale(loc, de_word="Fensterchen")  # same files, other strings
    sources._gettext_table.cache_clear()
    on2 = P.Pipeline(on.config, tmp_path / "c", log=lambda _m: None)
    off2 = P.Pipeline(off.config, tmp_path / "d", log=lambda _m: None)
    assert on2.stage_key("neurons") != key_on       # the strings used are in the key
    assert off2.stage_key("neurons") == key_off     # and a run that does not use them ignores them
    sources._gettext_table.cache_clear()


def test_token_languages_record_the_gettext_strings_they_used(tmp_path, tiny_tokenizer, data_root) -> None:
    from interp.data import sources
    from interp.crosslingual.token_languages import gettext_texts, texts_sha, token_languages_from_data

    loc = _locale(tmp_path / "loc")
    sources._gettext_table.cache_clear()
    plain = token_languages_from_data(tiny_tokenizer, data_root, ["en", "de", "fr"])
    used = token_languages_from_data(tiny_tokenizer, data_root, ["en", "de", "fr"], gettext=True, locale_dir=loc)
    assert plain.meta["gettext"] is False and "gettext_sha" not in plain.meta
    assert used.meta["gettext_sha"] == texts_sha(gettext_texts(["en", "de", "fr"], loc))
    assert used.meta["gettext_strings"] == {"en": 2, "de": 2, "fr": 1}
    assert int(used.totals.sum()) > int(plain.totals.sum())
    sources._gettext_table.cache_clear()


# ----------------------------------------------------------------------------- 6: one rule everywhere
def test_passing_the_bridges_own_tokenizer_keeps_auto(tiny_dirs, tmp_path) -> None:
    """generate/continuation_nll/retrieval given ``tokenizer=bridge.tokenizer`` (re-opened by TransformerLens
    with BOS on) must see the ids of ``auto`` (GPT-2: no BOS), as when no tokenizer is passed."""
    from detox_train.evaluate.metrics import continuation_nll
    from interp.model.loading import load_model
    from interp.model.tokenization import native_adds_bos, token_rule
    from test_tokenization import _capture

    bridge = load_model(str(tiny_dirs["gpt2"]))
    tok = bridge.tokenizer
    assert native_adds_bos(tok) and not token_rule(bridge).add_bos
    assert token_rule(bridge, tokenizer=tok).add_bos is False
    text = "the quick brown fox"
    bare = list(tok(text, add_special_tokens=False)["input_ids"])
    with _capture(bridge) as seen:
        generate(bridge, [Prompt(id="t:en:0", lang="en", text=text, index=0, toxicity=None, source="t", group=0)],
                 out_path=tmp_path / "g.jsonl", tokenizer=tok, k=1, max_new_tokens=1, progress=False)
    assert seen[0] == bare
    with _capture(bridge) as seen:
        continuation_nll(bridge, [text], [" jumps"], tokenizer=tok)
    assert seen[0][:len(bare)] == bare


def test_onpolicy_pairs_prompt_ids_follow_the_rule(tiny_tokenizer) -> None:
    from detox_train.pairs import onpolicy_pairs
    from interp.model.tokenization import set_bos_policy
    from tiny_models import make_model

    model = make_model("gpt2", len(tiny_tokenizer), seed=0)
    seen: list[list[int]] = []
    orig = model.generate

    def spy(*a, **kw):
        seen.append(kw["input_ids"][0].tolist())
        return orig(*a, **kw)

    model.generate = spy
    bare = list(tiny_tokenizer("I want to", add_special_tokens=False)["input_ids"])
    set_bos_policy(model, "always")
    onpolicy_pairs(model, tiny_tokenizer, ["I want to"], lambda t: list(range(len(t))), k=2, max_new_tokens=2)
    assert seen[-1] == [tiny_tokenizer.bos_token_id] + bare  # BOS id 0 is a real id, not "missing"
    set_bos_policy(model, "never")
    onpolicy_pairs(model, tiny_tokenizer, ["I want to"], lambda t: list(range(len(t))), k=2, max_new_tokens=2)
    assert seen[-1] == bare


def test_vllm_backend_sends_the_rules_token_ids(tiny_tokenizer, tmp_path) -> None:
    """A stand-in ``vllm.LLM`` (same call surface): prompts arrive as ids, BOS by policy, cut to the budget."""
    from types import SimpleNamespace

    import detox_train.evaluate.generation as G
    from interp.model.tokenization import set_bos_policy

    class FakeLLM:
        llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=6))

        def __init__(self):
            self.got = []

        def get_tokenizer(self):
            return tiny_tokenizer

        def generate(self, prompts, params, use_tqdm=False):
            self.got.extend(prompts)
            return [SimpleNamespace(outputs=[SimpleNamespace(text=" x", token_ids=[1])] * p.n) for p in params]

    llm = set_bos_policy(FakeLLM(), "always")
    G_params = lambda **kw: SimpleNamespace(**kw)  # noqa: E731
    s = G.GenerationSettings(k=2, max_new_tokens=2, backend="vllm")
    rule, budget = G._vllm_prompt_rule(llm, 2)
    assert budget == 4
    ps = _prompts()
    G._generate_vllm(llm, ps, {p.id: [0, 1] for p in ps}, s, rule, budget, sampling_params=G_params)
    for p, got in zip(ps, llm.got):
        bare = list(tiny_tokenizer(p.text, add_special_tokens=False)["input_ids"])
        want = [tiny_tokenizer.bos_token_id] + bare[-3:] if len(bare) > 3 else [tiny_tokenizer.bos_token_id] + bare
        assert got == {"prompt_token_ids": want}


# ----------------------------------------------------------------------------- 7: manifest records resolved BOS
@pytest.mark.parametrize("policy,adds", [("auto", False), ("always", True)])
def test_run_manifest_records_the_resolved_adds_bos_per_model(tmp_path, policy, adds) -> None:
    import json

    from interp.app.pipeline import Pipeline
    from interp.app.run_config import load_run_config

    pipe = Pipeline(load_run_config(preset="smoke", overrides={"bos": policy}), tmp_path / "r", log=lambda _m: None)
    pipe.run(only=["model"])
    tok = json.loads((tmp_path / "r" / "manifest.json").read_text())["tokenization"]
    assert tok["bos_policy"] == policy
    assert tok["models"]["base"]["adds_bos"] is adds and tok["models"]["base"]["native_bos"] is False
    again = Pipeline(pipe.config, tmp_path / "r", log=lambda _m: None)
    again.run(only=["model"])  # cached: the resolved rule stays recorded
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["tokenization"]["models"]["base"] == tok[
        "models"]["base"]


@pytest.mark.parametrize("argv", [["neurons", "find"], ["probe", "train"], ["eval", "generate"]])
def test_standalone_clis_take_bos_and_the_model_carries_it(argv, tiny_dirs) -> None:
    import argparse

    from interp.app.cli_common import add_model_args, load_model_from_args
    from interp.model.tokenization import token_rule

    from interp.app.cli import build_parser

    helptext = build_parser()._subparsers._group_actions[0].choices[argv[0]]._subparsers._group_actions[0].choices[
        argv[1]].format_help()
    assert "--bos" in helptext
    p = argparse.ArgumentParser()
    add_model_args(p)
    for policy, adds in (("auto", False), ("always", True), ("never", False)):
        model = load_model_from_args(p.parse_args(["--model", str(tiny_dirs["gpt2"]), "--bos", policy]))
        assert token_rule(model).policy == policy and token_rule(model).add_bos is adds


# ----------------------------------------------------------------------------- 8: n_languages threshold
def test_n_languages_ignores_slivers_of_a_measured_distribution(tiny_tokenizer) -> None:
    from interp.crosslingual.token_languages import count_token_languages
    from interp.neurons.vocab import project_to_vocab
    from tiny_models import fox_bridge

    tok = tiny_tokenizer
    bridge, fox = fox_bridge(tok)
    # "fox" is about 95% English, 5% German by rate (German has 20x more other text per fox).
    texts = {"en": ["the quick brown fox"] * 10, "de": ["the quick brown fox " + "Ich will nach Hause " * 40]}
    tl = count_token_languages(tok, texts, min_count=1)
    d = tl.distribution(fox)
    assert 0 < d["de"] < 0.1 < d["en"]
    pv = project_to_vocab(bridge, [(1, 0)], k=1, lexicons={}, token_languages=tl).per_vector
    assert int(pv["n_languages"].iloc[0]) == 1  # German's sliver is no language of this vector
    even = count_token_languages(tok, {"en": ["the quick brown fox"] * 5, "de": ["the quick brown fox"] * 5})
    pv = project_to_vocab(bridge, [(1, 0)], k=1, lexicons={}, token_languages=even).per_vector
    assert int(pv["n_languages"].iloc[0]) == 2


def test_neurons_project_uses_measured_token_languages(tiny_dirs, tmp_path, data_root) -> None:
    import json

    import torch

    from interp.core.artifacts import save_tensors
    from test_neurons_cli import run

    model = str(tiny_dirs["gpt2"])
    probe = tmp_path / "probe"
    probe.mkdir()
    save_tensors(probe / "probe.safetensors", {"weight": torch.randn(1, 32), "bias": torch.zeros(1)})
    common = ["--model", model, "--device", "cpu", "--dtype", "float32"]
    out = tmp_path / "neurons.json"
    assert run(["neurons", "find", *common, "--probe", str(probe), "--top-k", "3", "--out", str(out)]) == 0
    assert run(["neurons", "project", *common, "--data-root", str(data_root), "--languages", "en", "de",
                "--neurons", str(out), "--all", "--k", "5", "--out-dir", str(tmp_path / "v")]) == 0
    man = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert man["config"]["token_languages"].startswith("measured on data")


def test_data_check_lists_extra_rtplx_locales(tmp_path, capsys) -> None:
    from interp.core.artifacts import write_jsonl
    from interp.app.cli import main
    from test_data_helpers import make_mini_root, rtplx_row

    root = make_mini_root(tmp_path / "data")
    write_jsonl(root / "rtp-lx-v0.2" / "RTP_LX_SW.jsonl",
                [rtplx_row(str(i), "SW", f"ninataka kwenda nyumbani {i}") for i in range(5)])
    assert main(["data", "check", "--data-root", str(root), "--locale-dir", str(tmp_path / "no-locale")]) == 0
    out = capsys.readouterr().out
    sw = [line.split() for line in out.splitlines() if line.startswith("sw ")]
    assert sw and sw[0][1] == "5" and int(sw[0][2]) + int(sw[0][3]) == 5
    assert "beyond the paper's 17: sw" in out
    en = [line.split() for line in out.splitlines() if line.startswith("en ")]
    assert en[0][1] == "12"
