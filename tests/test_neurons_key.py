"""key_activations (paper Fig. 3): per-language group means vs the oracle, CIs, ratio, figure."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scipy import stats as sps

from interp.neurons.key_activations import key_activations
from interp.data.languages import UnknownLanguageError
from interp.model.loading import ModelView, wrap_bridge
from interp.model.record import model_record
from test_activations import oracle
from tiny_models import make_model, make_tokenizer




PROMPTS = {"en": ["I want to", "you are a stupid", "hello"], "fr": ["Je veux", "la maison"], "zh": ["我想"]}


def test_summary_matches_oracle_and_ratio(tmp_path) -> None:
    b1 = wrap_bridge(make_model("gpt2", 320, seed=0), make_tokenizer())
    b2 = wrap_bridge(make_model("gpt2", 320, seed=1), make_tokenizer())
    neurons = [(0, 3), (1, 8), (1, 20)]
    res = key_activations({"base": b1, "dpo": b2}, neurons, PROMPTS, n_new_tokens=4, n_boot=200, progress=False)
    assert list(res.summary.columns) == ["model", "lang", "mean", "ci_lo", "ci_hi", "n_prompts"]
    assert len(res.summary) == 6 and len(res.per_neuron) == 18
    for name, bridge in (("base", b1), ("dpo", b2)):
        for lang, prompts in PROMPTS.items():
            ref, _ = oracle(bridge, prompts, neurons, 4)
            row = res.summary[(res.summary.model == name) & (res.summary.lang == lang)].iloc[0]
            assert row["mean"] == pytest.approx(float(ref.mean()), abs=1e-5)
            # CI: the Student-t interval over per-prompt means (zero width at the mean for one prompt).
            per_prompt = ref.mean(dim=(1, 2)).double().numpy()
            if len(prompts) > 1:
                want = sps.t.interval(0.95, len(prompts) - 1, loc=per_prompt.mean(), scale=sps.sem(per_prompt))
            else:
                want = (per_prompt.mean(), per_prompt.mean())
            assert (row.ci_lo, row.ci_hi) == pytest.approx(want, abs=1e-5)
            assert row.n_prompts == len(prompts)
            per = res.per_neuron[(res.per_neuron.model == name) & (res.per_neuron.lang == lang)]
            np.testing.assert_allclose(per["mean"].to_numpy(), ref.mean(dim=(0, 1)).numpy(), atol=1e-5)
    base = res.summary[res.summary.model == "base"].set_index("lang")["mean"]
    ratio = res.ratio_to_english.set_index("lang")["ratio"]
    if base["en"] > 0:
        assert ratio["fr"] == pytest.approx(base["fr"] / base["en"])
    else:
        assert np.isnan(ratio["fr"])
    fig = res.figure()  # figures.fig_key_activations of the summary: one bar group per model
    assert [t.name for t in fig.data] == ["base", "dpo"]
    for trace in fig.data:
        means = res.summary[res.summary.model == trace.name].set_index("lang")["mean"]
        assert list(trace.y) == pytest.approx([means[lang] for lang in trace.x])
    assert res.to_json(tmp_path / "k.json").is_file()


def test_model_views_share_weights() -> None:
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(make_model("llama", 320), LoraConfig(r=2, target_modules=["up_proj"], lora_alpha=8))
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    bridge = wrap_bridge(pm.base_model.model, make_tokenizer())
    model_record(bridge).peft = pm
    res = key_activations({"base": ModelView(bridge, False), "dpo": ModelView(bridge, True)}, [(1, 2)],
                          {"en": ["hello", "I want"]}, n_new_tokens=3, n_boot=50, progress=False)
    m = res.summary.set_index("model")["mean"]
    assert abs(m["base"] - m["dpo"]) > 1e-4


def test_bad_inputs() -> None:
    b = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    with pytest.raises(UnknownLanguageError, match="klingon"):
        key_activations({"m": b}, [(0, 1)], {"klingon": ["x"]}, progress=False)
    with pytest.raises(ValueError, match="empty prompt list"):
        key_activations({"m": b}, [(0, 1)], {"en": []}, progress=False)
    with pytest.raises(IndexError, match="neuron out of range"):
        key_activations({"m": b}, [(0, 640)], {"en": ["hi"]}, progress=False)
    with pytest.raises(ValueError, match="models is empty"):
        key_activations({}, [(0, 1)], {"en": ["hi"]}, progress=False)


def test_toxic_neuron_table_is_accepted_everywhere() -> None:
    from interp.neurons.interventions import NeuronIntervention, intervention_sweep
    from interp.neurons.ranking import find_toxic_neurons
    from interp.neurons.vocab import project_to_vocab

    b = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    table = find_toxic_neurons(b, torch.randn(32), top_k=3, progress=False)
    res = key_activations({"m": b}, table, {"en": ["hi"]}, n_new_tokens=2, n_boot=10, progress=False)
    assert len(res.per_neuron) == 3
    assert NeuronIntervention(table, "add", 1.0).neurons == table.layers_neurons()
    assert len(project_to_vocab(b, table, k=3, lexicons={"en": ["hell"]}).table) == 9
    df = intervention_sweep(b, table, {"en": ["hi"]}, offsets=(0, -1), score_fn=lambda t, l: [0.0] * len(t),
                            max_new_tokens=2, progress=False)
    assert len(df) == 2
