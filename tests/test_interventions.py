"""Interventions change the MLP output by exactly Δact·v; generation and the sweep run under them."""
from __future__ import annotations

import pytest
import torch

from interp.model.architecture import unwrap, get_adapter
from interp.neurons.interventions import NeuronIntervention, generate_with_intervention, intervene, intervention_sweep
from interp.data.languages import UnknownLanguageError
from interp.model.loading import wrap_bridge
from tiny_models import make_model, make_tokenizer




def _capture(bridge, layer: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (activation, MLP down-projection output) of ``layer`` via plain torch hooks."""
    mod = unwrap(get_adapter(bridge).out_proj(layer))
    got: dict[str, torch.Tensor] = {}
    h = mod.register_forward_hook(lambda m, a, o: got.update(act=a[0].detach().clone(), out=o.detach().clone()))
    with torch.no_grad():
        bridge.original_model(ids)
    h.remove()
    return got["act"], got["out"]


@pytest.mark.parametrize("mode,value", [("add", 5.0), ("scale", -2.0), ("set", 3.0)])
def test_mlp_output_changes_by_delta_act_times_value_vector(family: str, mode: str, value: float) -> None:
    bridge = wrap_bridge(make_model(family, 320), make_tokenizer())
    a = get_adapter(bridge)
    ids = torch.randint(2, 320, (2, 7), generator=torch.Generator().manual_seed(0))
    neurons = [(1, 3), (1, 10)]  # same layer: an earlier-layer edit would also change act0
    act0, out0 = _capture(bridge, 1, ids)
    with intervene(bridge, NeuronIntervention(neurons, mode, value)):
        act1, out1 = _capture(bridge, 1, ids)
    # independent computation of Δact from the unedited activations, then Σ Δact_i · v_i
    cols = [3, 10]
    expected_act = {"add": act0[..., cols] + value, "scale": act0[..., cols] * value,
                    "set": torch.full_like(act0[..., cols], value)}[mode]
    delta = expected_act - act0[..., cols]
    V = a.value_vectors([1])[0][cols]  # [2, d_model]
    torch.testing.assert_close(out1 - out0, delta @ V, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(act1[..., cols], expected_act)
    # other units untouched; hooks are gone afterwards
    mask = torch.ones(act0.shape[-1], dtype=torch.bool)
    mask[cols] = False
    torch.testing.assert_close(act1[..., mask], act0[..., mask])
    act2, out2 = _capture(bridge, 1, ids)
    torch.testing.assert_close(out2, out0)


def test_transformerlens_hook_list_equals_context_manager(family: str) -> None:
    bridge = wrap_bridge(make_model(family, 320), make_tokenizer())
    ids = torch.randint(2, 320, (1, 6), generator=torch.Generator().manual_seed(1))
    iv = NeuronIntervention([(0, 1), (1, 2)], "add", [4.0, -3.0])
    with intervene(bridge, iv):
        _, want = _capture(bridge, 1, ids)
    with bridge.hooks(fwd_hooks=iv.hooks(bridge)):
        _, got = _capture(bridge, 1, ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_generated_positions_leave_prompt_pass_alone() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    ids = torch.randint(2, 320, (1, 5), generator=torch.Generator().manual_seed(2))
    _, base = _capture(bridge, 1, ids)
    iv = NeuronIntervention([(1, 3)], "add", 5.0, positions="generated")
    with intervene(bridge, iv):
        _, first = _capture(bridge, 1, ids)
        _, second = _capture(bridge, 1, ids)
    torch.testing.assert_close(first, base)
    assert (second - base).abs().max() > 1e-3


def test_generation_changes_under_large_intervention_and_matches_oracle() -> None:
    bridge = wrap_bridge(make_model("llama", 320), make_tokenizer())
    prompts = ["I want to", "我想", "Je veux", "Yo quiero"]
    plain = generate_with_intervention(bridge, prompts, None, max_new_tokens=10)
    a = get_adapter(bridge)
    # push one neuron hard; its value vector decides the next token everywhere
    iv = NeuronIntervention([(1, 5)], "add", 500.0)
    pushed = generate_with_intervention(bridge, prompts, iv, max_new_tokens=10)
    assert pushed != plain
    # oracle: full forwards with the bridge's own hook, one prompt at a time, no cache
    tok = bridge.tokenizer
    from interp.neurons.activations import encode_prompts
    for p, ids in zip(pushed, encode_prompts(bridge, prompts)):
        seq = list(ids)
        for _ in range(10):
            with torch.no_grad(), bridge.hooks(fwd_hooks=iv.hooks(bridge)):
                logits = bridge.original_model(torch.tensor([seq])).logits
            seq.append(int(logits[0, -1].argmax()))
        assert tok.decode(seq[len(ids):], skip_special_tokens=True) == p


def test_sweep_table_and_errors() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    seen: list[str] = []

    def score(texts: list[str], lang: str) -> list[float]:
        seen.append(lang)
        return [len(t) / 100 for t in texts]

    df = intervention_sweep(bridge, [(1, 3), (0, 2)], {"en": ["I want to", "hello"], "ZH-Hans": ["我想"]},
                            offsets=(0, -5), score_fn=score, max_new_tokens=3, progress=False)
    assert list(df.columns) == ["offset", "lang", "mean_toxicity", "n"]
    assert set(df.lang) == {"en", "zh"} and len(df) == 4
    assert df.loc[(df.lang == "en") & (df.offset == 0), "n"].item() == 2
    with pytest.raises(UnknownLanguageError, match="xx"):
        intervention_sweep(bridge, [(1, 3)], {"xx": ["a"]}, score_fn=score, progress=False)
    with pytest.raises(ValueError, match="empty prompt list"):
        intervention_sweep(bridge, [(1, 3)], {"en": []}, score_fn=score, progress=False)
    with pytest.raises(IndexError, match="out of range"):
        with intervene(bridge, NeuronIntervention([(0, 999)], "add", 1.0)):
            pass
    with pytest.raises(ValueError, match="mode"):
        NeuronIntervention([(0, 1)], "mul", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 neurons"):
        NeuronIntervention([(0, 1), (0, 2)], "add", [1.0, 2.0, 3.0])
