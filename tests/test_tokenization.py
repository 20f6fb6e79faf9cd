"""One tokenization rule: every stage sees the same ids for the same text, in every family.

The expected ids are built here by hand from the bare tokenizer (no specials) plus BOS exactly
when the policy says so (``auto``: when the family's own tokenizer adds one). Each stage's
function is then run on a tiny model and the ids its forward pass actually receives are captured
with a pre-hook on the HF model, so the check covers what the model sees, not what a helper says.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from interp.model.loading import load_model
from interp.model.tokenization import native_adds_bos, set_bos_policy, token_rule
from tiny_models import NATIVE_BOS_FAMILIES

TEXT = "Je veux aller"
POLICIES = ("auto", "always", "never")


def _expected(tok, family: str, policy: str, text: str = TEXT) -> list[int]:
    bos = {"auto": family in NATIVE_BOS_FAMILIES, "always": True, "never": False}[policy]
    return ([tok.bos_token_id] if bos else []) + list(tok(text, add_special_tokens=False)["input_ids"])


@contextlib.contextmanager
def _capture(bridge):
    """Record the unpadded input ids of every forward call of the HF model."""
    seen: list[list[int]] = []
    hf = bridge.original_model

    def pre(_m, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        for r in range(ids.shape[0]):
            row = ids[r] if mask is None else ids[r][mask[r, -ids.shape[1]:].bool()]
            seen.append(row.tolist())

    h = hf.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield seen
    finally:
        h.remove()


@pytest.fixture(scope="module")
def bridges(tiny_dirs):
    return {f: load_model(str(d)) for f, d in tiny_dirs.items()}


def _stage_ids(bridge, tmp_path) -> dict[str, list[int]]:
    """Return {stage: the ids of TEXT its first forward pass sees}."""
    from detox_train.evaluate import generate
    from detox_train.evaluate.metrics import continuation_nll
    from interp.data.records import Prompt
    from interp.neurons.interventions import intervention_sweep
    from interp.neurons.key_activations import key_activations
    from interp.neurons.ranking import find_toxic_neurons
    from interp.crosslingual.retrieval import layer_representations
    from probes import extract_features

    d_model = bridge.cfg.d_model if hasattr(bridge, "cfg") else None
    out: dict[str, list[int]] = {}

    def first(fn) -> list[int]:
        with _capture(bridge) as seen:
            fn()
        return seen[0]

    out["probe"] = first(lambda: extract_features(bridge, [TEXT], use_cache=False, progress=False))
    direction = torch.ones(d_model or bridge.original_model.config.hidden_size)
    out["neurons"] = first(lambda: find_toxic_neurons(bridge, direction, top_k=2, filter_prompts=[TEXT],
                                                      n_new_tokens=2, progress=False))
    prompt = Prompt(id="t:0", lang="fr", text=TEXT, index=0, toxicity=None, source="test", group=0)
    out["generation"] = first(lambda: generate(bridge, [prompt], k=1, max_new_tokens=2,
                                               out_path=tmp_path / "s.jsonl", progress=False))
    out["key_activations"] = first(lambda: key_activations({"m": bridge}, [(0, 0)], {"fr": [TEXT]},
                                                           n_new_tokens=2, n_boot=0, progress=False))
    out["sweep"] = first(lambda: intervention_sweep(bridge, [(0, 0)], {"fr": [TEXT]}, offsets=(-1.0,),
                                                    score_fn=lambda t, lang: [0.0] * len(t), max_new_tokens=2,
                                                    progress=False))
    out["retrieval"] = first(lambda: layer_representations(bridge, [TEXT], cache=False, progress=False))
    n_prompt = len(token_rule(bridge).ids(TEXT))
    out["perplexity"] = first(lambda: continuation_nll(bridge, [TEXT], [" maison"]))[:n_prompt]
    return out


def _dpo_ids(model_dir: str, policy: str, text: str) -> list[int]:
    """The prompt ids TRL's DPO tokenization produces, with the tokenizer DPO loads."""
    from trl.data_utils import _tokenize

    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import _load_model, to_dataset
    from interp.data.records import PreferencePair

    _, tok = _load_model(DPOTrainConfig(model=model_dir, bos=policy), "cpu")
    ds = to_dataset([PreferencePair(id="p", prompt=text, chosen=" a", rejected=" b", source="t", meta={})], tok)
    return list(_tokenize(tok, ds[0]["prompt"])["input_ids"])


@pytest.mark.parametrize("policy", POLICIES)
def test_every_stage_sees_the_same_ids(family, policy, bridges, tiny_dirs, tmp_path) -> None:
    bridge = set_bos_policy(bridges[family], policy)
    tok = token_rule(bridge).tokenizer
    want = _expected(tok, family, policy)
    try:
        got = _stage_ids(bridge, tmp_path)
    finally:
        set_bos_policy(bridge, "auto")
    got["dpo"] = _dpo_ids(str(tiny_dirs[family]), policy, TEXT)
    assert set(got) == {"probe", "neurons", "generation", "key_activations", "sweep", "retrieval", "perplexity",
                        "dpo"}
    bad = {stage: ids for stage, ids in got.items() if ids != want}
    assert not bad, f"{family}/{policy}: expected {want}, stages differ: {bad}"


def test_auto_follows_the_models_own_tokenizer(tiny_dirs, bridges) -> None:
    """The bridge's tokenizer (re-opened by TransformerLens with BOS on) must not decide ``auto``."""
    from transformers import AutoTokenizer

    for family, d in tiny_dirs.items():
        native = native_adds_bos(AutoTokenizer.from_pretrained(str(d)))
        assert native == (family in NATIVE_BOS_FAMILIES)
        assert native_adds_bos(bridges[family].tokenizer), "TransformerLens re-opens with BOS on"
        assert token_rule(bridges[family]).add_bos == native


def test_dpo_empty_prompt_is_one_start_token(family, tiny_dirs) -> None:
    """ParaDetox's empty prompt: exactly one BOS for Llama/Aya (was two), and the filter counts it."""
    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import _load_model, to_dataset
    from detox_train.pairs import filter_pairs_by_tokens
    from interp.data.records import PreferencePair
    from trl.data_utils import _tokenize

    _, tok = _load_model(DPOTrainConfig(model=str(tiny_dirs[family])), "cpu")
    assert _dpo_ids(str(tiny_dirs[family]), "auto", "") == [tok.bos_token_id]
    pair = PreferencePair(id="p", prompt="", chosen="you are a stupid idiot", rejected="I want to go home now",
                          source="t", meta={})
    row = to_dataset([pair], tok)[0]
    n_trl = max(len(_tokenize(tok, row["prompt"] + c)["input_ids"]) for c in (row["chosen"], row["rejected"])) + 1
    # max_length exactly at TRL's count keeps the pair; one less drops it (the old filter undercounted).
    kept, _ = filter_pairs_by_tokens([pair], tok, max_length=n_trl, max_prompt_length=64)
    assert len(kept) == 1
    kept, rep = filter_pairs_by_tokens([pair], tok, max_length=n_trl - 1, max_prompt_length=64)
    assert not kept and rep.n_too_long == 1
    kept, rep = filter_pairs_by_tokens([pair], tok, max_length=256, max_prompt_length=0)
    assert not kept and rep.n_prompt_too_long == 1, "an empty prompt is one start token, not zero"


def test_rule_truncates_prompts_from_the_left_and_sentences_from_the_right(tiny_tokenizer) -> None:
    from interp.model.tokenization import TokenRule

    rule = TokenRule(tiny_tokenizer, "always", True, False)
    bare = tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    ids, cut = rule.encode([TEXT, "hi"], "prompt", max_length=4)
    assert ids[0] == [tiny_tokenizer.bos_token_id] + bare[-3:] and cut == [0]
    assert rule.ids(TEXT, "sentence", max_length=4) == [tiny_tokenizer.bos_token_id] + bare[:3]
    assert rule.ids(TEXT, "continuation") == bare
    assert rule.content_mask(ids[0]) == [False, True, True, True]
    with pytest.raises(ValueError, match="purpose"):
        rule.encode([TEXT], "title")  # type: ignore[arg-type]


def test_bad_policy_is_a_config_error() -> None:
    from interp.core.configio import ConfigError
    from interp.app.run_config import load_run_config

    with pytest.raises(ConfigError, match="bos"):
        load_run_config(preset="smoke", overrides={"bos": "sometimes"})


def test_policy_is_in_every_stage_key_and_the_run_manifest(tmp_path) -> None:
    import json

    from interp.app.pipeline import STAGES, Pipeline
    from interp.app.run_config import load_run_config

    auto = Pipeline(load_run_config(preset="smoke"), tmp_path / "a", log=lambda _m: None)
    always = Pipeline(load_run_config(preset="smoke", overrides={"bos": "always"}), tmp_path / "b",
                      log=lambda _m: None)
    for stage in STAGES:
        same = auto.stage_key(stage) == always.stage_key(stage)
        assert same == (stage == "model"), stage  # the weights do not depend on it; everything after does
    always.run(only=["model"])
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["tokenization"]["bos_policy"] == "always" and man["config"]["bos"] == "always"
    assert token_rule(always.base_model()).add_bos  # the loaded model carries the run's policy
