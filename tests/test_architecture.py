"""The adapter's view of each family must reproduce an independent HF forward pass."""
from __future__ import annotations

import copy

import pytest
import torch

from interp.architecture import UnsupportedArchitectureError, _unwrap, get_adapter
from interp.loading import wrap_bridge
from tiny_models import make_model, make_tokenizer


def _ids(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(2, vocab, (3, 9), generator=g)


@pytest.mark.parametrize("layer", [0, 1])
def test_mlp_output_is_sum_of_activation_times_value_vector(family: str, layer: int) -> None:
    hf = make_model(family, 320)
    reference = copy.deepcopy(hf)  # untouched HF model: the independent computation
    ids = _ids(320)
    ref_adapter = get_adapter(reference)
    out_mod = _unwrap(ref_adapter.out_proj(layer))
    captured: dict[str, torch.Tensor] = {}
    handle = out_mod.register_forward_hook(lambda m, a, o: captured.setdefault("out", o))
    with torch.no_grad():
        reference(ids)
    handle.remove()

    bridge = wrap_bridge(hf, make_tokenizer())
    adapter = get_adapter(bridge)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids, names_filter=[adapter.hook_name(layer)])
    act = cache[adapter.hook_name(layer)]
    assert act.shape[-1] == adapter.d_mlp
    values = adapter.value_vectors([layer])[0]
    bias = getattr(out_mod, "bias", None)
    recon = torch.einsum("bpi,id->bpd", act, values) + (0 if bias is None else bias)
    torch.testing.assert_close(recon, captured["out"], atol=1e-5, rtol=1e-4)


def test_unembedding_final_residual_reproduces_logits(family: str) -> None:
    hf = make_model(family, 320)
    ids = _ids(320)
    adapter = get_adapter(hf)
    resid: dict[str, torch.Tensor] = {}
    norm = _unwrap(adapter.final_norm())
    h = norm.register_forward_hook(lambda m, a, o: resid.update(pre=a[0]))
    with torch.no_grad():
        logits = hf(ids).logits
    h.remove()
    with torch.no_grad():
        normed = adapter.final_norm()(resid["pre"])
        recon = normed @ adapter.unembed_matrix()
        if adapter.unembed_bias() is not None:
            recon = recon + adapter.unembed_bias()
    torch.testing.assert_close(recon, logits, atol=1e-5, rtol=1e-4)


def test_shapes_and_orientation(family: str) -> None:
    hf = make_model(family, 320)
    a = get_adapter(hf)
    assert a.n_layers == 2 and a.d_model == 32
    assert a.d_mlp == (128 if family == "bloom" else 64)
    assert a.value_vectors().shape == (2, a.d_mlp, 32)
    assert a.key_vectors().shape == (2, a.d_mlp, 32)
    gates = a.gate_vectors()
    assert (gates is not None) == (family in ("llama", "cohere"))
    # Key vector i must be the weight that produces pre-activation i: x @ k_i == up_proj(x)[i] - bias
    x = torch.randn(4, 32)
    up = _unwrap(a.in_proj(0))
    bias = getattr(up, "bias", None)
    expected = up(x) - (0 if bias is None else bias)
    torch.testing.assert_close(x @ a.key_vectors([0])[0].T, expected, atol=1e-5, rtol=1e-4)
    assert a.lora_target_modules()
    if family == "cohere":
        assert a.logit_scale == pytest.approx(0.0625)


def test_adapter_same_through_bridge(family: str) -> None:
    hf = make_model(family, 320)
    before = get_adapter(hf).value_vectors().clone()
    bridge = wrap_bridge(hf, make_tokenizer())
    torch.testing.assert_close(get_adapter(bridge).value_vectors(), before)


def test_unsupported_architecture_lists_supported() -> None:
    import transformers as T

    m = T.AutoModelForCausalLM.from_config(T.GPTNeoXConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                           num_attention_heads=2, intermediate_size=32))
    with pytest.raises(UnsupportedArchitectureError, match="gpt2.*bloom.*llama.*cohere"):
        get_adapter(m)


def test_lora_delta_included_in_value_vectors() -> None:
    from peft import LoraConfig, get_peft_model

    hf = make_model("llama", 320)
    base_v = get_adapter(hf).value_vectors().clone()
    pm = get_peft_model(hf, LoraConfig(r=2, target_modules=["down_proj"], lora_alpha=4))
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.3)
    tuned_v = get_adapter(pm).value_vectors()
    assert (tuned_v - base_v).abs().max() > 1e-3
    with pm.disable_adapter():
        torch.testing.assert_close(get_adapter(pm).value_vectors(), base_v)
    merged = pm.merge_and_unload()
    torch.testing.assert_close(get_adapter(merged).value_vectors(), tuned_v, atol=1e-5, rtol=1e-5)


def test_key_parts_reproduce_the_activation(family: str) -> None:
    """A gated neuron's key is gate and up: act(x . gate_i) * (x . up_i) must equal the MLP's own
    activation (the down projection's input); a non-gated key alone gives act(x . k_i + b_i)."""
    hf = make_model(family, 320)
    a = get_adapter(hf)
    parts = a.key_parts([1])
    assert set(parts) == ({"up", "gate"} if family in ("llama", "cohere") else {"up"})
    mlp = _unwrap(a.block(1)).mlp
    seen: dict[str, torch.Tensor] = {}
    h = _unwrap(a.out_proj(1)).register_forward_pre_hook(lambda m, args: seen.update(act=args[0]))
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mlp(x[None], torch.zeros(1, 5, 32)) if family == "bloom" else mlp(x[None])  # BLOOM's MLP adds a residual
    h.remove()
    up_bias = getattr(_unwrap(a.in_proj(1)), "bias", None)
    pre_up = x @ parts["up"][0].T + (0 if up_bias is None else up_bias)
    if "gate" in parts:
        want = torch.nn.functional.silu(x @ parts["gate"][0].T) * pre_up
        with pytest.raises(ValueError, match="part"):
            a.key_vectors(part="down")
    else:
        act = {"gpt2": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
               "bloom": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[family]
        want = act(pre_up)
        with pytest.raises(ValueError, match="no gated MLP"):
            a.key_vectors(part="gate")
    torch.testing.assert_close(seen["act"][0], want, atol=1e-4, rtol=1e-4)
