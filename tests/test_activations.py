"""KV-cached batched activation collection must equal the slow reference algorithm (the oracle)."""
from __future__ import annotations

import pytest
import torch

from interp.neurons.activations import collect_generation_activations, encode_prompts
from interp.model.architecture import get_adapter
from interp.model.loading import ModelView, wrap_bridge
from interp.model.record import model_record
from tiny_models import make_model, make_tokenizer



PROMPTS = ["I want to", "you are a stupid", "Je veux aller à la maison et", "我想", "hello",
           "what the hell is wrong with you today", "Ich will"]


def oracle(bridge, prompts: list[str], neurons: list[tuple[int, int]], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference algorithm: one prompt at a time, full forward (no cache) for every step."""
    a = get_adapter(bridge)
    names = sorted({a.hook_name(l) for l, _ in neurons})
    acts = torch.zeros(len(prompts), n, len(neurons))
    toks = torch.zeros(len(prompts), n, dtype=torch.long)
    for p, ids in enumerate(encode_prompts(bridge, prompts)):
        seq = list(ids)
        for step in range(n):
            with torch.no_grad():
                logits, cache = bridge.run_with_cache(torch.tensor([seq]), names_filter=names)
            for j, (l, i) in enumerate(neurons):
                acts[p, step, j] = cache[a.hook_name(l)][0, -1, i]
            nxt = int(logits[0, -1].argmax())
            toks[p, step] = nxt
            seq.append(nxt)
    return acts, toks


@pytest.fixture
def bridge_of():
    def build(family: str, seed: int = 0):
        return wrap_bridge(make_model(family, 320, seed=seed), make_tokenizer())
    return build


def test_kv_cached_equals_oracle(family: str, bridge_of) -> None:
    bridge = bridge_of(family)
    a = get_adapter(bridge)
    neurons = [(1, 3), (0, 5), (1, a.d_mlp - 1), (0, 0)]
    n = 6
    ref_acts, ref_toks = oracle(bridge, PROMPTS, neurons, n)
    acts, toks = collect_generation_activations(bridge, PROMPTS, neurons, n_new_tokens=n, batch_size=3,
                                                return_tokens=True)
    assert acts.shape == (len(PROMPTS), n, len(neurons)) and acts.dtype == torch.float32
    assert torch.equal(toks, ref_toks)
    torch.testing.assert_close(acts, ref_acts, atol=1e-5, rtol=0)


def test_batch_size_and_order_do_not_matter(bridge_of) -> None:
    bridge = bridge_of("llama")
    neurons = [(0, 1), (1, 2)]
    one = collect_generation_activations(bridge, PROMPTS, neurons, n_new_tokens=4, batch_size=1)
    many = collect_generation_activations(bridge, PROMPTS, neurons, n_new_tokens=4, batch_size=16)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)
    rev = collect_generation_activations(bridge, PROMPTS[::-1], neurons, n_new_tokens=4)
    torch.testing.assert_close(rev.flip(0), many, atol=1e-5, rtol=0)


@pytest.mark.parametrize("native", [False, True])
def test_bos_follows_the_models_tokenizer_and_the_policy(family: str, native: bool) -> None:
    """BOS comes from the model's own tokenizer under ``auto`` (whatever the family), and the
    ``always``/``never`` policies override it; the decoder is fed exactly those ids."""
    from interp.model.tokenization import set_bos_policy

    tok = make_tokenizer(adds_bos=native)
    bridge = wrap_bridge(make_model(family, 320), tok)
    bare = tok("hello", add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    for policy, want_bos in (("auto", native), ("always", True), ("never", False)):
        set_bos_policy(bridge, policy)
        want = ([bos] if want_bos else []) + bare
        assert encode_prompts(bridge, ["hello"]) == [want], (policy, native)
        fed: list[list[int]] = []
        h = bridge.original_model.register_forward_pre_hook(
            lambda m, a, kw: fed.append(kw["input_ids"][0].tolist()), with_kwargs=True)
        try:
            collect_generation_activations(bridge, ["hello"], [(0, 0)], n_new_tokens=1)
        finally:
            h.remove()
        assert fed[0] == want, (policy, native)


def test_each_view_follows_its_own_trajectory() -> None:
    from peft import LoraConfig, get_peft_model

    hf = make_model("llama", 320)
    pm = get_peft_model(hf, LoraConfig(r=2, target_modules=["up_proj"], lora_alpha=8))
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    bridge = wrap_bridge(pm.base_model.model, make_tokenizer())
    model_record(bridge).peft = pm
    neurons = [(0, 1), (1, 7)]
    tuned = collect_generation_activations(ModelView(bridge, True), PROMPTS[:3], neurons, n_new_tokens=3)
    base = collect_generation_activations(ModelView(bridge, False), PROMPTS[:3], neurons, n_new_tokens=3)
    assert (tuned - base).abs().max() > 1e-3
    with pm.disable_adapter():
        ref, _ = oracle(bridge, PROMPTS[:3], neurons, 3)
    torch.testing.assert_close(base, ref, atol=1e-5, rtol=0)


def test_bad_inputs_have_clear_errors(bridge_of) -> None:
    bridge = bridge_of("gpt2")
    with pytest.raises(ValueError, match="empty prompt list"):
        collect_generation_activations(bridge, [], [(0, 1)])
    with pytest.raises(IndexError, match="neuron out of range.*d_mlp=64"):
        collect_generation_activations(bridge, ["hi"], [(0, 64)])
    with pytest.raises(IndexError, match="layer out of range.*2 layers"):
        collect_generation_activations(bridge, ["hi"], [(2, 0)])
    with pytest.raises(TypeError, match="single string"):
        collect_generation_activations(bridge, "hi", [(0, 1)])  # type: ignore[arg-type]


def test_bridge_restored_and_transformerlens_hooks_still_fire(bridge_of) -> None:
    from interp.neurons.interventions import NeuronIntervention, intervene

    bridge = bridge_of("gpt2")
    before = [type(m).__name__ for m in bridge.original_model.modules()]
    neurons = [(1, 3), (1, 4)]
    iv = NeuronIntervention([(0, 2)], "add", 50.0)
    with intervene(bridge, iv):
        want = collect_generation_activations(bridge, PROMPTS[:3], neurons, n_new_tokens=3)
    with bridge.hooks(fwd_hooks=iv.hooks(bridge)):  # a TL hook: decoding must keep the bridge wrappers
        got = collect_generation_activations(bridge, PROMPTS[:3], neurons, n_new_tokens=3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    plain = collect_generation_activations(bridge, PROMPTS[:3], neurons, n_new_tokens=3)
    assert (plain - want).abs().max() > 1e-3
    assert [type(m).__name__ for m in bridge.original_model.modules()] == before


def test_a_cache_that_does_not_grow_is_refused(family: str, bridge_of, monkeypatch) -> None:
    """A bridge component that skips the KV-cache update must stop decoding (and bridging), not give
    wrong numbers."""
    from transformers import DynamicCache

    from interp.model.loading import check_kv_cache

    bridge = bridge_of(family)
    hf = bridge.original_model
    forward = hf.forward

    def dropping(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.past_key_values = DynamicCache()  # what TL 4.3 bridges did under transformers 5.24
        return out

    monkeypatch.setattr(hf, "forward", dropping)
    with pytest.raises(RuntimeError, match="KV cache holds 0 positions"):
        collect_generation_activations(bridge, PROMPTS[:2], [(1, 3)], n_new_tokens=3)
    with pytest.raises(RuntimeError, match="KV cache holds 0 positions"):
        check_kv_cache(hf)  # what wrap_bridge runs, so HF generate paths are covered too


def test_bridge_components_keep_the_kv_cache(family: str, bridge_of) -> None:
    """Under a TransformerLens hook (bridge components in place), cached decoding equals a full forward."""
    bridge = bridge_of(family)
    a = get_adapter(bridge)
    neurons = [(1, 3), (0, 5)]
    ref, _ = oracle(bridge, PROMPTS[:3], neurons, 4)
    with bridge.hooks(fwd_hooks=[(a.hook_name(0), lambda act, hook: act)]):
        got = collect_generation_activations(bridge, PROMPTS[:3], neurons, n_new_tokens=4, batch_size=2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
