"""Activation patching: the lockstep convention against a slow oracle, and a planted model pair
whose tuned model differs from the base only in chosen neurons (share 1 for them, 0 for a
disjoint random set)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from interp.neurons.activations import encode_prompts
from interp.model.architecture import unwrap, get_adapter
from interp.model.loading import wrap_bridge
from interp.neurons.patching import (PatchingInputError, activation_patching, layer_control, patched_greedy_decode,
                             random_control, share_row)
from tiny_models import make_model, make_tokenizer

PROMPTS = ["I want to", "the quick brown fox jumps", "Je veux", "this is a nice day and"]


def _oracle(target, source, prompts, neurons, n):
    """Slow reference: per prompt, no cache, no padding; the source re-runs the whole trajectory."""
    a = get_adapter(target)
    by_layer: dict[int, list[int]] = {}
    for l, u in neurons:
        by_layer.setdefault(l, []).append(u)
    out = []
    for ids in encode_prompts(target, prompts):
        seq = list(ids)
        for _ in range(n):
            x = torch.tensor([seq])
            got: dict[int, torch.Tensor] = {}
            hs = [unwrap(get_adapter(source).out_proj(l)).register_forward_pre_hook(
                lambda m, args, _l=l: got.__setitem__(_l, args[0].detach().clone())) for l in by_layer]
            with torch.no_grad():
                source.original_model(x)
            for h in hs:
                h.remove()

            def put(m, args, _l):
                new = args[0].clone()
                new[..., by_layer[_l]] = got[_l][..., by_layer[_l]]
                return (new,)

            hs = [unwrap(a.out_proj(l)).register_forward_pre_hook(lambda m, args, _l=l: put(m, args, _l))
                  for l in by_layer]
            with torch.no_grad():
                logits = target.original_model(x).logits
            for h in hs:
                h.remove()
            seq.append(int(logits[0, -1].argmax()))
        out.append(seq[len(ids):])
    return torch.tensor(out)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bloom"])
def test_lockstep_patching_matches_the_slow_oracle(family: str) -> None:
    tok = make_tokenizer()
    target = wrap_bridge(make_model(family, len(tok), seed=0), tok)
    source = wrap_bridge(make_model(family, len(tok), seed=1), tok)
    neurons = [(0, 1), (0, 5), (1, 2), (1, 7)]
    got = patched_greedy_decode(target, source, PROMPTS, neurons, n_new_tokens=6, batch_size=3)
    want = _oracle(target, source, PROMPTS, neurons, 6)
    assert torch.equal(got, want)
    # and patching really changes the trajectory (the test would pass vacuously otherwise)
    from interp.neurons.activations import greedy_decode

    own = greedy_decode(target, encode_prompts(target, PROMPTS), 6)
    assert not torch.equal(own, got) or family == "bloom"


#: The plant sits in a middle layer: layer-0 and earlier-layer activations are identical in both models.
PLANT_LAYER, N_LAYERS = 1, 3


def _plant(family: str, hf, units: list[int], layer: int, scale: float = 1.0):
    """Return a copy of ``hf`` whose ``units`` in ``layer`` have changed input weights (``scale``: strength)."""
    out = copy.deepcopy(hf)
    with torch.no_grad():
        if family == "gpt2":  # Conv1D c_fc: weight [d_model, d_mlp], bias [d_mlp]
            fc = out.transformer.h[layer].mlp.c_fc
            fc.weight[:, units] *= 12.0 * scale
            fc.bias[units] += 6.0 * scale
        else:  # llama: up_proj weight [d_mlp, d_model]
            out.model.layers[layer].mlp.up_proj.weight[units, :] *= 40.0 * scale
    return out


def _planted(family: str, units: list[int], layer: int = PLANT_LAYER, *, also: list[int] | None = None,
             scale: float = 1.0):
    """Return (base, tuned): tuned differs from base only in the input weights of ``units`` (+ ``also``);
    with ``also``, a third model with only ``units`` planted and a fourth with only ``also`` planted."""
    tok = make_tokenizer()
    hf = make_model(family, len(tok), seed=0, n_layers=N_LAYERS)
    models = [wrap_bridge(hf, tok), wrap_bridge(_plant(family, hf, units + (also or []), layer, scale), tok)]
    if also:
        models += [wrap_bridge(_plant(family, hf, units, layer, scale), tok),
                   wrap_bridge(_plant(family, hf, also, layer, scale), tok)]
    return tuple(models)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_planted_pair_share_is_one_for_the_neurons_and_zero_for_a_random_set(family: str) -> None:
    units = [3, 9, 17, 30]
    base, tuned = _planted(family, units)
    located = [(PLANT_LAYER, u) for u in units]
    prompts = {"en": PROMPTS, "fr": ["Je veux aller", "la maison", "Yo quiero comer", "Ich will nach"]}
    from interp.neurons.activations import greedy_decode

    def texts(model, ps):
        t = model.tokenizer
        return [t.decode(x.tolist(), skip_special_tokens=True) for x in greedy_decode(model, encode_prompts(model, ps), 8)]

    base_texts = {t for ps in prompts.values() for t in texts(base, ps)}
    tuned_texts = {t for ps in prompts.values() for t in texts(tuned, ps)}
    assert base_texts != tuned_texts

    def score(ts: list[str], lang: str) -> list[float]:
        # "toxicity" = the base model's own behaviour: 1 for a base continuation, 0 otherwise
        return [1.0 if t in base_texts else 0.0 for t in ts]

    res = activation_patching(base, tuned, located, prompts, score, n_new_tokens=8, batch_size=4, n_random=2,
                              n_boot=200, progress=False)
    s = res.summary.set_index(["set", "direction", "lang"])
    for d in ("forward", "reverse"):
        assert s.loc[("located", d, "all"), "share"] == pytest.approx(1.0)
        assert s.loc[("layers_all", d, "all"), "share"] == pytest.approx(1.0)
        for r in ("random_1", "random_2"):
            assert s.loc[(r, d, "all"), "share"] == pytest.approx(0.0)
    assert s.loc[("located", "forward", "all"), "change"] < 0
    lo, hi = s.loc[("located", "forward", "all"), ["share_lo", "share_hi"]]
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    assert set(res.summary["lang"]) == {"en", "fr", "all"}
    assert res.meta["sets"] == {"located": 4, "random_1": 4, "random_2": 4, "layers_all": get_adapter(base).d_mlp}
    # key drop = base minus tuned mean activation, each model on its own greedy trajectory
    from interp.neurons.activations import collect_generation_activations as cga

    kd = res.key_drop.set_index("lang")["key_drop"]
    for lang, ps in prompts.items():
        want = float(cga(base, ps, located, n_new_tokens=8).mean() - cga(tuned, ps, located, n_new_tokens=8).mean())
        assert kd[lang] == pytest.approx(want, abs=1e-6) and abs(want) > 1e-3


PARTIAL_PROMPTS = PROMPTS + ["Je veux aller", "la maison", "Yo quiero comer", "Ich will nach", "we are",
                             "she said that", "a b c", "hello there my"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_partial_plant_gives_the_share_of_a_model_with_only_those_neurons_planted(family: str) -> None:
    """Tuned = base with neurons A and B changed; patching A alone must behave exactly like a model
    with only A planted (forward) and like one with only B planted (reverse), computed without any
    patching: the source really runs in lockstep, and the share lies strictly between 0 and 1."""
    from interp.neurons.activations import greedy_decode

    # a weaker plant, so that each group alone changes some continuations but not all
    (a_units, scale), b_units = {"gpt2": ([22, 35], 0.5), "llama": ([3, 9], 0.3)}[family], [17, 30, 41, 50]
    base, tuned, only_a, only_b = _planted(family, a_units, also=b_units, scale=scale)
    located = [(PLANT_LAYER, u) for u in a_units]
    n = 8
    own = {name: greedy_decode(m, encode_prompts(m, PARTIAL_PROMPTS), n)
           for name, m in [("base", base), ("tuned", tuned), ("a", only_a), ("b", only_b)]}
    assert torch.equal(patched_greedy_decode(base, tuned, PARTIAL_PROMPTS, located, n_new_tokens=n, batch_size=4),
                       own["a"])
    assert torch.equal(patched_greedy_decode(tuned, base, PARTIAL_PROMPTS, located, n_new_tokens=n, batch_size=4),
                       own["b"])
    decode = lambda toks: [base.tokenizer.decode(x.tolist(), skip_special_tokens=True) for x in toks]  # noqa: E731
    base_texts = set(decode(own["base"]))

    def score(ts: list[str], lang: str) -> list[float]:
        return [1.0 if t in base_texts else 0.0 for t in ts]

    tox = {k: float(np.mean(score(decode(v), "en"))) for k, v in own.items()}
    want_fwd = (tox["a"] - tox["base"]) / (tox["tuned"] - tox["base"])
    want_rev = (tox["tuned"] - tox["b"]) / (tox["tuned"] - tox["base"])
    assert 0 < want_fwd < 1 and 0 < want_rev < 1, (tox, want_fwd, want_rev)  # a partial share, not 0 or 1
    res = activation_patching(base, tuned, located, {"en": PARTIAL_PROMPTS}, score, n_new_tokens=n, batch_size=4,
                              n_random=1, layer_control_set=False, n_boot=100, progress=False)
    s = res.summary.set_index(["set", "direction", "lang"])
    assert s.loc[("located", "forward", "en"), "share"] == pytest.approx(want_fwd)
    assert s.loc[("located", "reverse", "en"), "share"] == pytest.approx(want_rev)


def test_patched_decode_truncates_prompts_like_the_baseline() -> None:
    """A prompt longer than the context budget keeps its end, as in collect_generation_activations, so a
    no-op patch (identical weights) reproduces the baseline tokens exactly."""
    from interp.neurons.activations import collect_generation_activations

    tok = make_tokenizer()
    hf = make_model("gpt2", len(tok), seed=0)  # n_positions 128
    base, twin = wrap_bridge(hf, tok), wrap_bridge(copy.deepcopy(hf), tok)
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 30)
    assert len(encode_prompts(base, [long])[0]) > 128
    prompts = [long, "I want to"]
    _, want = collect_generation_activations(base, prompts, [(0, 1)], n_new_tokens=5, return_tokens=True)
    got = patched_greedy_decode(base, twin, prompts, [(0, 1), (1, 3)], n_new_tokens=5, batch_size=2)
    assert torch.equal(got, want)


def test_controls_keep_the_layer_mix_and_stay_disjoint() -> None:
    base = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    located = [(0, 1), (0, 2), (1, 5)]
    ctl = random_control(base, located, seed=3)
    assert sorted(l for l, _ in ctl) == [0, 0, 1] and not set(ctl) & set(located)
    assert ctl == random_control(base, located, seed=3) and ctl != random_control(base, located, seed=4)
    assert len(layer_control(base, located)) == 2 * get_adapter(base).d_mlp


def test_share_row_against_direct_computation() -> None:
    rng = np.random.default_rng(0)
    b, t = rng.random(50), rng.random(50) * 0.3
    p = b + 0.4 * (t - b)
    row = share_row(b, t, p, "forward", n_boot=500)
    assert row["share"] == pytest.approx((p.mean() - b.mean()) / (t.mean() - b.mean()))
    assert row["share_lo"] <= row["share"] <= row["share_hi"]
    rev = share_row(b, t, b, "reverse", n_boot=100)
    assert rev["share"] == pytest.approx(1.0)
    same = share_row(b, b, p, "forward", n_boot=100)
    assert np.isnan(same["share"]) and "undefined" in same["warning"] and same["change_is_noise"]
    # a real change: its CI excludes 0, no flag
    assert row["change"] == pytest.approx(t.mean() - b.mean())
    assert row["change_lo"] <= row["change"] <= row["change_hi"] < 0 and not row["change_is_noise"]
    assert row["warning"] == ""
    # a change that is noise (tuned = base + zero-mean noise): the share is finite but flagged
    noisy = b + rng.normal(0, 0.3, 50)
    noisy += 0.01 - (noisy.mean() - b.mean())  # a tiny, nonzero mean change
    nrow = share_row(b, noisy, b + 0.5 * (noisy - b), "forward", n_boot=500)
    assert np.isfinite(nrow["share"]) and nrow["change_lo"] < 0 < nrow["change_hi"]
    assert nrow["change_is_noise"] and "includes 0" in nrow["warning"]


def test_patching_refuses_shared_weights_and_other_tokenizers() -> None:
    from interp.model.loading import ModelView

    base = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    with pytest.raises(PatchingInputError, match="two separate models"):
        patched_greedy_decode(ModelView(base, False), ModelView(base, True), ["hi"], [(0, 1)], n_new_tokens=2)
    other = wrap_bridge(make_model("gpt2", 300), make_tokenizer(300))
    with pytest.raises(PatchingInputError, match="different tokenizers"):
        patched_greedy_decode(base, other, ["hi"], [(0, 1)], n_new_tokens=2)
