"""The adapter's view of each family must reproduce an independent HF forward pass.

Runs over the paper's four families and four newer ones (Qwen2, Mistral, Gemma-2, XGLM) whose
specs come only from TransformerLens's component mapping.
"""
from __future__ import annotations

import copy

import pytest
import torch

import interp.model.architecture as arch
from interp.model.architecture import UnsupportedArchitectureError, unwrap, get_adapter
from interp.model.loading import wrap_bridge
from tiny_models import ALL_FAMILIES, FAMILIES, GATED, make_config, make_model, make_tokenizer


@pytest.fixture(params=ALL_FAMILIES)
def family(request) -> str:
    """Every family of this module's tests (overrides conftest's paper-only fixture)."""
    return request.param


def _ids(vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(2, vocab, (3, 9), generator=g)


@pytest.mark.parametrize("layer", [0, 1])
def test_mlp_output_is_sum_of_activation_times_value_vector(family: str, layer: int) -> None:
    hf = make_model(family, 320)
    reference = copy.deepcopy(hf)  # untouched HF model: the independent computation
    ids = _ids(320)
    ref_adapter = get_adapter(reference)
    out_mod = unwrap(ref_adapter.out_proj(layer))
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
    norm = unwrap(adapter.final_norm())
    h = norm.register_forward_hook(lambda m, a, o: resid.update(pre=a[0]))
    with torch.no_grad():
        logits = hf(ids).logits
    h.remove()
    with torch.no_grad():
        normed = adapter.final_norm()(resid["pre"])
        recon = normed @ adapter.unembed_matrix()
        if adapter.unembed_bias() is not None:
            recon = recon + adapter.unembed_bias()
        recon = adapter.apply_logit_softcap(recon)
    torch.testing.assert_close(recon, logits, atol=1e-5, rtol=1e-4)


def test_shapes_and_orientation(family: str) -> None:
    hf = make_model(family, 320)
    a = get_adapter(hf)
    assert a.n_layers == 2 and a.d_model == 32
    assert a.d_mlp == (128 if family == "bloom" else 64)
    assert a.value_vectors().shape == (2, a.d_mlp, 32)
    assert a.key_vectors().shape == (2, a.d_mlp, 32)
    gates = a.gate_vectors()
    assert (gates is not None) == (family in GATED)
    # Key vector i must be the weight that produces pre-activation i: x @ k_i == up_proj(x)[i] - bias
    x = torch.randn(4, 32)
    up = unwrap(a.in_proj(0))
    bias = getattr(up, "bias", None)
    expected = up(x) - (0 if bias is None else bias)
    torch.testing.assert_close(x @ a.key_vectors([0])[0].T, expected, atol=1e-5, rtol=1e-4)
    assert a.lora_target_modules()
    if family == "cohere":
        assert a.logit_scale == pytest.approx(0.0625)


def test_adapter_same_through_bridge(family: str) -> None:
    hf = make_model(family, 320)
    before = get_adapter(hf).value_vectors().clone()
    spec_hf = get_adapter(hf).spec
    bridge = wrap_bridge(hf, make_tokenizer())
    arch._SPECS.clear()  # derive again, now from the live bridge's own adapter and wrapped modules
    assert get_adapter(bridge).spec == spec_hf
    torch.testing.assert_close(get_adapter(bridge).value_vectors(), before)


def test_unsupported_architecture_lists_supported() -> None:
    import transformers as T

    m = T.AutoModelForCausalLM.from_config(T.CTRLConfig(vocab_size=64, n_embd=16, n_layer=1, n_head=2, dff=32))
    with pytest.raises(UnsupportedArchitectureError, match="CTRLLMHeadModel") as e:
        get_adapter(m)
    msg = str(e.value)
    assert "cannot bridge" in msg and "gpt2" in msg and "cohere" in msg
    for supported in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma2ForCausalLM", "XGLMForCausalLM"):
        assert supported in msg


def test_bridged_model_without_dense_mlp_is_refused() -> None:
    import transformers as T

    cfg = T.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1)
    with pytest.raises(UnsupportedArchitectureError, match="no dense MLP"):
        get_adapter(T.AutoModelForCausalLM.from_config(cfg))


def test_check_supported_fails_before_loading(tmp_path) -> None:
    import transformers as T

    from interp.model.loading import ModelNotFoundError, load_hf_model

    T.CTRLConfig(vocab_size=64, n_embd=16, n_layer=1, n_head=2, dff=32, architectures=["CTRLLMHeadModel"]
                 ).save_pretrained(tmp_path)  # a config only: the check must fire before any weights are read
    with pytest.raises(UnsupportedArchitectureError, match=str(tmp_path)):
        load_hf_model(tmp_path, device="cpu")
    assert not issubclass(UnsupportedArchitectureError, ModelNotFoundError)


@pytest.mark.parametrize("paper_family", FAMILIES)
def test_derivation_reproduces_the_documented_paper_families(paper_family: str) -> None:
    derived = get_adapter(make_model(paper_family, 320)).spec
    documented = arch.FAMILIES[paper_family]
    for field in ("layers", "w_in", "w_gate", "w_out", "out_is_conv1d", "final_norm", "unembed",
                  "logit_scale_attr", "prepends_bos"):
        assert getattr(derived, field) == getattr(documented, field), field
    assert set(derived.lora_targets) == set(documented.lora_targets)


def test_lora_targets_cover_every_linear_of_a_block(family: str) -> None:
    from transformers.pytorch_utils import Conv1D

    hf = make_model(family, 320)
    a = get_adapter(hf)
    targets = set(a.lora_target_modules())
    linears = {n.split(".")[-1] for n, m in a.block(0).named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    assert linears and linears <= targets, linears - targets


def _derived_without_override(monkeypatch, family: str):
    monkeypatch.setitem(arch.OVERRIDES, family, {})
    arch._SPECS.clear()
    try:
        return get_adapter(make_model(family, 320))
    finally:
        arch._SPECS.clear()


@pytest.mark.parametrize("fam", ["cohere", "cohere2"])
def test_override_cohere_logit_scale_is_needed_and_right(fam: str, monkeypatch) -> None:
    hf = make_model(fam, 320)
    ids = _ids(320)
    with torch.no_grad():
        logits = hf(ids).logits
        hidden = hf.model(ids).last_hidden_state  # after the final norm
    a = get_adapter(hf)
    torch.testing.assert_close(hidden @ a.unembed_matrix(), logits, atol=1e-5, rtol=1e-4)
    bare = _derived_without_override(monkeypatch, fam)  # the mapping alone misses the 1/16
    assert bare.logit_scale == 1.0
    assert not torch.allclose(hidden @ bare.unembed_matrix(), logits, atol=1e-3)


def test_logit_scale_follows_a_fold_into_lm_head() -> None:
    """TransformerLens folds Cohere's scale into lm_head when it processes weights and sets the
    module's ``logit_scale`` to 1: W_U must not carry the scale twice."""
    hf = make_model("cohere", 320)
    ids = _ids(320)
    with torch.no_grad():
        scale = float(hf.logit_scale)
        hf.lm_head.weight.mul_(scale)
        hf.logit_scale = 1.0
        logits = hf(ids).logits
        hidden = hf.model(ids).last_hidden_state
    a = get_adapter(hf)
    assert a.logit_scale == 1.0
    torch.testing.assert_close(hidden @ a.unembed_matrix(), logits, atol=1e-5, rtol=1e-4)


def test_override_gpt2_bos_policy(monkeypatch) -> None:
    """TransformerLens's GPT-2 adapter prepends BOS by default; mGPT's HF tokenizer adds none, and our
    one policy per run follows it (docs/METHOD.md). BLOOM/Qwen2 (no BOS) and Llama/Gemma-2 come
    from the mapping's own default."""
    assert get_adapter(make_model("gpt2", 320)).spec.prepends_bos is False
    assert _derived_without_override(monkeypatch, "gpt2").spec.prepends_bos is True
    assert get_adapter(make_model("bloom", 320)).spec.prepends_bos is False
    assert get_adapter(make_model("qwen2", 320)).spec.prepends_bos is False
    assert get_adapter(make_model("gemma2", 320)).spec.prepends_bos is True


def test_gemma2_soft_cap_comes_from_the_mapping() -> None:
    a = get_adapter(make_model("gemma2", 320))
    assert a.spec.logit_softcap == pytest.approx(make_config("gemma2", 320).final_logit_softcapping)
    x = torch.tensor([0.1, 5.0])
    torch.testing.assert_close(a.apply_logit_softcap(x), 0.5 * torch.tanh(x / 0.5))
    assert get_adapter(make_model("llama", 320)).spec.logit_softcap is None


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


@pytest.mark.parametrize("family", FAMILIES + ("qwen2", "mistral", "gemma2"))  # XGLM has no MLP container to call
def test_key_parts_reproduce_the_activation(family: str) -> None:
    """A gated neuron's key is gate and up: act(x . gate_i) * (x . up_i) must equal the MLP's own
    activation (the down projection's input); a non-gated key alone gives act(x . k_i + b_i)."""
    hf = make_model(family, 320)
    a = get_adapter(hf)
    parts = a.key_parts([1])
    assert set(parts) == ({"up", "gate"} if family in GATED else {"up"})
    mlp = unwrap(a.block(1)).mlp
    seen: dict[str, torch.Tensor] = {}
    h = unwrap(a.out_proj(1)).register_forward_pre_hook(lambda m, args: seen.update(act=args[0]))
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mlp(x[None], torch.zeros(1, 5, 32)) if family == "bloom" else mlp(x[None])  # BLOOM's MLP adds a residual
    h.remove()
    up_bias = getattr(unwrap(a.in_proj(1)), "bias", None)
    pre_up = x @ parts["up"][0].T + (0 if up_bias is None else up_bias)
    if "gate" in parts:
        from transformers.activations import ACT2FN

        act_name = getattr(hf.config, "hidden_activation", None) or hf.config.hidden_act  # Gemma-2: gelu tanh
        want = ACT2FN[act_name](x @ parts["gate"][0].T) * pre_up
        with pytest.raises(ValueError, match="part"):
            a.key_vectors(part="down")
    else:
        act = {"gpt2": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
               "bloom": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[family]
        want = act(pre_up)
        with pytest.raises(ValueError, match="no gated MLP"):
            a.key_vectors(part="gate")
    torch.testing.assert_close(seen["act"][0], want, atol=1e-4, rtol=1e-4)

def test_table_entry_serves_a_model_the_mapping_cannot(monkeypatch) -> None:
    """An explicit FAMILIES entry is the fallback where TransformerLens has no mapping (here CTRL)."""
    import transformers as T

    m = T.AutoModelForCausalLM.from_config(T.CTRLConfig(vocab_size=64, n_embd=16, n_layer=2, n_head=2, dff=32)).eval()
    monkeypatch.setitem(arch.FAMILIES, "ctrl", arch.FamilySpec(
        family="ctrl", model_types=("ctrl",), example="Salesforce/ctrl", layers="transformer.h", w_in="ffn.0",
        w_gate=None, w_out="ffn.2", out_is_conv1d=False, final_norm="transformer.layernorm", unembed="lm_head",
        logit_scale_attr=None, lora_targets=("Wq", "Wk", "Wv", "dense", "0", "2"), prepends_bos=False))
    a = get_adapter(m)
    assert (a.family, a.n_layers, a.d_model, a.d_mlp) == ("ctrl", 2, 16, 32)
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(0))
    seen: dict[str, torch.Tensor] = {}
    out_mod = unwrap(a.out_proj(1))
    h = out_mod.register_forward_hook(lambda mod, args, out: seen.update(act=args[0], out=out))
    with torch.no_grad():
        m(ids)
    h.remove()
    torch.testing.assert_close(seen["act"] @ a.value_vectors([1])[0] + out_mod.bias, seen["out"], atol=1e-5, rtol=1e-4)
