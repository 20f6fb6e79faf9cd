"""Baselines: residual steering, key scaling (un-aligning) and AurA, each against an independent computation."""
from __future__ import annotations

import copy

import pytest
import torch

from interp.model.architecture import unwrap, get_adapter
from interp.neurons.baselines import aura, aura_auroc, auroc_per_column, pooled_activations, residual_steering, scale_keys
from interp.neurons.interventions import NeuronIntervention, intervene
from interp.model.loading import wrap_bridge
from tiny_models import make_model, make_tokenizer




IDS = torch.randint(2, 320, (2, 6), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scale", ["raw", "unit"])
def test_residual_steering_shifts_final_residual(family: str, scale: str) -> None:
    """Lee et al.'s alphas scale the raw vector (default); ``unit`` normalises it. The vector has
    norm 3, so the two scales differ by 3x and the check tells them apart."""
    hf = make_model(family, 320)
    bridge = wrap_bridge(hf, make_tokenizer())
    a = get_adapter(bridge)
    d = torch.randn(a.d_model, generator=torch.Generator().manual_seed(1))
    d = 3.0 * d / d.norm()
    shift = 7.0 * (d if scale == "raw" else d / d.norm())
    seen: dict[str, torch.Tensor] = {}
    h = a.final_norm().register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    with torch.no_grad():
        hf(IDS)
        base = seen["x"]
        kw = {} if scale == "raw" else {"scale": "unit"}  # raw is the default
        with residual_steering(bridge, d, 7.0, **kw):
            logits = hf(IDS).logits
        steered = seen["x"]
    h.remove()
    torch.testing.assert_close(steered - base, (-shift).expand_as(base), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        ref = a.final_norm()(base - shift) @ a.unembed_matrix()
        if a.unembed_bias() is not None:
            ref = ref + a.unembed_bias()
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)


def test_raw_steering_of_a_probe_uses_its_weight_vector() -> None:
    """A fitted probe reports a unit direction; Lee's alpha applies to its weight vector."""
    import numpy as np

    from interp.neurons.baselines import steering_vector

    class FakeProbe:
        coef_ = np.array([[3.0, 0.0, 4.0, 0.0]])
        direction = torch.tensor([0.6, 0.0, 0.8, 0.0])

    torch.testing.assert_close(steering_vector(FakeProbe(), 4), torch.tensor([3.0, 0.0, 4.0, 0.0]))
    torch.testing.assert_close(steering_vector(FakeProbe(), 4, "unit"), torch.tensor([0.6, 0.0, 0.8, 0.0]))
    with pytest.raises(ValueError, match="raw"):
        steering_vector(FakeProbe(), 4, "lee")  # type: ignore[arg-type]


def test_scale_keys_equals_scaled_weights(family: str) -> None:
    hf = make_model(family, 320)
    edited = copy.deepcopy(hf)
    neurons = [(0, 3), (1, 5), (1, 9)]
    ea = get_adapter(edited)
    with torch.no_grad():
        for l, i in neurons:
            mods = [ea.in_proj(l)] + ([ea.gate_proj(l)] if ea.gate_proj(l) is not None else [])
            for mod in mods:
                w = unwrap(mod).weight
                if ea.spec.out_is_conv1d:  # Conv1D stores [d_in, d_out]: keys are columns
                    w[:, i] *= 10.0
                else:
                    w[i] *= 10.0
        want = edited(IDS).logits
        bridge = wrap_bridge(hf, make_tokenizer())
        plain = hf(IDS).logits
        with scale_keys(bridge, neurons, 10.0):
            got = hf(IDS).logits
        after = hf(IDS).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (got - plain).abs().max() > 1e-4
    torch.testing.assert_close(after, plain)


def test_aura_auroc_damping_and_intervention() -> None:
    from sklearn.metrics import roc_auc_score

    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    toxic = ["you are a stupid idiot", "what the hell is wrong with you", "stupid stupid", "idiot"]
    clean = ["this is a nice day", "I want to go home now", "Je veux aller", "the quick brown fox"]
    res = aura_auroc(bridge, toxic, clean, progress=False)
    a = get_adapter(bridge)
    assert res.auroc.shape == (a.n_layers, a.d_mlp)
    pos = pooled_activations(bridge, toxic)
    neg = pooled_activations(bridge, clean)
    for l, i in [(0, 0), (1, 7), (1, 63)] + [(l, i) for l, i, _ in res.top(3)]:
        y = [1] * 4 + [0] * 4
        s = torch.cat([pos[:, l, i], neg[:, l, i]]).tolist()
        assert float(res.auroc[l, i]) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    # pooled max equals an independent per-text run through the bridge's own hook
    from interp.neurons.activations import encode_prompts
    ids = encode_prompts(bridge, toxic[:1])[0]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(torch.tensor([ids]), names_filter=[a.hook_name(1)])
    torch.testing.assert_close(pos[0, 1], cache[a.hook_name(1)][0].amax(0), atol=1e-5, rtol=1e-5)
    alpha = res.damping()
    hi = res.auroc > 0.5
    torch.testing.assert_close(alpha[hi], 1 - 2 * (res.auroc[hi] - 0.5))
    assert torch.all(alpha[~hi] == 1)
    iv = res.intervention()
    assert len(iv.neurons) == int(hi.sum())
    with aura(bridge, res):
        damped = pooled_activations(bridge, toxic[:1], pooling="mean")
    # layer 0 sees unchanged inputs, so its pooled mean is scaled exactly by alpha
    base = pooled_activations(bridge, toxic[:1], pooling="mean")
    torch.testing.assert_close(damped[0, 0], base[0, 0] * alpha[0], atol=1e-5, rtol=1e-5)


def test_auroc_ties_and_repeated_neuron_edits() -> None:
    pos = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    neg = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    torch.testing.assert_close(auroc_per_column(pos, neg), torch.tensor([0.75, 0.25]))
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    a = get_adapter(bridge)
    got = {}
    h = unwrap(a.out_proj(1)).register_forward_hook(lambda m, args, o: got.update(o=o.clone()))
    with torch.no_grad(), intervene(bridge, NeuronIntervention([(1, 3), (1, 3)], "add", [1.0, 2.0])):
        bridge.original_model(IDS)
    twice = got["o"]
    with torch.no_grad(), intervene(bridge, NeuronIntervention([(1, 3)], "add", 3.0)):
        bridge.original_model(IDS)
    h.remove()
    torch.testing.assert_close(twice, got["o"])


def test_bad_inputs() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    with pytest.raises(ValueError, match="toxic_texts: empty"):
        aura_auroc(bridge, [], ["x"], progress=False)
    with pytest.raises(IndexError, match="out of range"):
        with scale_keys(bridge, [(5, 0)], 2.0):
            pass
    from interp.neurons.ranking import ProbeDimensionError
    with pytest.raises(ProbeDimensionError):
        with residual_steering(bridge, torch.randn(7), 1.0):
            pass
