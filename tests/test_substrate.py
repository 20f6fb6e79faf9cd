"""One model substrate: public TransformerLens API only, one cached adapter per model, one hook rule."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import transformers as T
from peft import LoraConfig, get_peft_model
from torch import nn

import interp.model.architecture as arch
from interp.neurons.activations import bare_modules, bridge_hooks_active, collect_prompt_activations
from interp.model.architecture import unwrap, get_adapter, invalidate_adapter
from interp.neurons.baselines import residual_steering
from interp.model.loading import ModelView, adapter_disabled, wrap_bridge
from interp.model.record import model_record
from probes import extract_features
from tiny_models import FAMILIES, make_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["I want to go home", "you are a stupid idiot", "Je veux", "hello there, friend"]


# ------------------------------------------------------------------ private TransformerLens access
def _defined_private(files) -> set[str]:
    names: set[str] = set()
    for p in files:
        text = p.read_text(encoding="utf-8")
        names |= set(re.findall(r"self\.(_[a-z]\w*)\s*[:=]", text))
        names |= set(re.findall(r"""(?:add_module|register_buffer|register_parameter|register_module)\(\s*["'](_[a-z]\w*)""",
                                text))
    return names


def _tl_private_names() -> set[str]:
    """Return the private attribute names TransformerLens's bridge defines, less those that torch's
    Module, transformers' base classes or this project define as well (``tok._tokenizer`` is HF's)."""
    import transformer_lens
    import transformers

    tl = Path(transformer_lens.__file__).parent
    hf = Path(transformers.__file__).parent
    module = nn.Module()
    return (_defined_private([*(tl / "model_bridge").rglob("*.py"), tl / "hook_points.py"])
            - _defined_private([*hf.glob("*.py"), *(hf / "tokenization_utils_base.py",)])
            - _defined_private(p for p in _source_files() if p.resolve() != Path(__file__).resolve())
            - set(dir(module)) - set(vars(module)))


def _source_files() -> list[Path]:
    return [p for d in ("interp", "probes", "detox_train", "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")]


def test_tl_private_names_are_found() -> None:
    # the scan below is only as good as this list: it must know the names the old code used
    names = _tl_private_names()
    assert {"_original_component", "_hook_registry"} <= names and "_modules" not in names


def test_no_private_transformer_lens_access() -> None:
    names = _tl_private_names()
    attr = re.compile(r"(?<!self)(?<!cls)\.(" + "|".join(sorted(names)) + r")\b")
    quoted = re.compile(r"""["'](""" + "|".join(sorted(names)) + r""")["']""")
    private_module = re.compile(r"transformer_lens(?:\.\w+)*\._\w+|from\s+transformer_lens[\w.]*\s+import\s+[^\n]*\b_[a-z]\w*")
    this = Path(__file__).resolve()
    hits = []
    for p in _source_files():
        if p.resolve() == this:
            continue
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            for rx in (attr, quoted, private_module):
                m = rx.search(code)
                if m:
                    hits.append(f"{p.relative_to(ROOT)}:{n}: {m.group(0)}")
    assert not hits, "private TransformerLens internals used (use the public API):\n" + "\n".join(hits)


def test_private_scan_catches_the_old_idioms(tmp_path: Path) -> None:
    names = _tl_private_names()
    attr = re.compile(r"(?<!self)(?<!cls)\.(" + "|".join(sorted(names)) + r")\b")
    quoted = re.compile(r"""["'](""" + "|".join(sorted(names)) + r""")["']""")
    private_module = re.compile(r"transformer_lens(?:\.\w+)*\._\w+")
    assert quoted.search('while "_original_component" in mod._modules:')
    assert private_module.search("from transformer_lens.model_bridge.sources._bridge_builder import build")
    assert attr.search("bridge.adapter._hook_registry")
    assert not attr.search("self._model = model") and not quoted.search('"original_component"')


# ------------------------------------------------------------------ adapter cache
@pytest.fixture
def count_weight_reads(monkeypatch):
    calls = {"n": 0}
    real = arch.effective_weight

    def spy(mod):
        calls["n"] += 1
        return real(mod)

    monkeypatch.setattr(arch, "effective_weight", spy)
    return calls


@pytest.mark.parametrize("family", FAMILIES)
def test_get_adapter_reads_layer0_weights_once(family: str, count_weight_reads) -> None:
    hf = make_model(family, 320)
    bridge = wrap_bridge(hf, make_tokenizer())
    count_weight_reads["n"] = 0
    first = get_adapter(bridge)
    assert count_weight_reads["n"] == 1
    # the bridge, the HF model and a view share the one measurement
    for m in (bridge, hf, ModelView(bridge, adapter_enabled=False), bridge):
        a = get_adapter(m)
        assert (a.n_layers, a.d_model, a.d_mlp, a.spec) == (first.n_layers, first.d_model, first.d_mlp, first.spec)
        assert a.layout is first.layout
    assert count_weight_reads["n"] == 1
    assert (first.d_model, first.d_mlp) == (32, 128 if family == "bloom" else 64)  # tiny_models' configs


def test_adapter_cache_follows_lora_inject_disable_and_merge(count_weight_reads) -> None:
    hf = make_model("llama", 320)
    base_w = [b.mlp.down_proj.weight.detach().clone() for b in hf.model.layers]
    plain = get_adapter(hf).layout
    pm = get_peft_model(hf, LoraConfig(r=2, target_modules=["down_proj"], lora_alpha=8))
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    # independent reference: a merged copy, read straight off the HF weights
    tuned_w = [b.mlp.down_proj.weight.detach().clone()
               for b in copy.deepcopy(pm).merge_and_unload().model.layers]
    assert (tuned_w[0] - base_w[0]).abs().max() > 1e-3

    n0 = count_weight_reads["n"]
    a = get_adapter(pm)  # LoRA injected: layer 0's down projection is a new module -> re-measured
    assert a.layout is not plain and count_weight_reads["n"] == n0 + 1
    torch.testing.assert_close(a.value_vectors(), torch.stack([w.T for w in tuned_w]), atol=1e-5, rtol=1e-5)

    bridge = wrap_bridge(pm.base_model.model, make_tokenizer())
    model_record(bridge).peft = pm
    with adapter_disabled(bridge):  # same modules, weights read live: no re-measure, base weights seen
        torch.testing.assert_close(get_adapter(bridge).value_vectors(), torch.stack([w.T for w in base_w]))
        assert get_adapter(bridge).layout is a.layout
    torch.testing.assert_close(get_adapter(ModelView(bridge, True)).value_vectors(),
                               torch.stack([w.T for w in tuned_w]), atol=1e-5, rtol=1e-5)

    merged = pm.merge_and_unload()  # the LoRA layers are replaced by plain ones: stale -> re-measured
    n1 = count_weight_reads["n"]
    after = get_adapter(merged)
    assert after.layout is not a.layout and after.layout.out0 is merged.model.layers[0].mlp.down_proj
    torch.testing.assert_close(after.value_vectors(), torch.stack([w.T for w in tuned_w]), atol=1e-5, rtol=1e-5)
    assert count_weight_reads["n"] > n1


def test_invalidate_adapter_after_in_place_surgery() -> None:
    hf = make_model("gpt2", 320)
    assert get_adapter(hf).d_mlp == 64
    # shrink layer 0's MLP in place: the same module objects, so the cache cannot see it
    for l in range(2):
        mlp = hf.transformer.h[l].mlp
        mlp.c_fc.weight = nn.Parameter(mlp.c_fc.weight[:, :48].clone())
        mlp.c_fc.bias = nn.Parameter(mlp.c_fc.bias[:48].clone())
        mlp.c_proj.weight = nn.Parameter(mlp.c_proj.weight[:48].clone())
    assert get_adapter(hf).d_mlp == 64  # stale, as documented
    invalidate_adapter(hf)
    assert get_adapter(hf).d_mlp == 48
    assert get_adapter(hf).value_vectors().shape == (2, 48, 32)


def test_adapter_does_not_keep_its_model_alive() -> None:
    import gc
    import weakref

    hf = make_model("gpt2", 320)
    get_adapter(hf)
    ref = weakref.ref(hf)
    del hf
    gc.collect()
    assert ref() is None


# ------------------------------------------------------------------ the one hook rule
def _bert():
    tok = make_tokenizer()
    cfg = T.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=80, pad_token_id=1)
    torch.manual_seed(0)
    return T.BertForMaskedLM(cfg), tok


@pytest.mark.parametrize("family", [*FAMILIES, "bert"])
def test_hook_rule(family: str) -> None:
    hf, tok = _bert() if family == "bert" else (make_model(family, 320), make_tokenizer())
    assert not bridge_hooks_active(hf)
    bridge = wrap_bridge(hf, tok)
    assert not bridge_hooks_active(hf), "TransformerLens's own wiring is not a user hook"
    with bridge.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", lambda x, hook: x)]):
        assert bridge_hooks_active(hf)
    assert not bridge_hooks_active(hf)
    h = bridge.blocks[0].register_forward_hook(lambda m, a, o: None)  # a raw hook on a bridge component
    assert bridge_hooks_active(hf)
    h.remove()
    h = unwrap(get_adapter(bridge).out_proj(0)).register_forward_pre_hook(lambda m, a: None)
    assert not bridge_hooks_active(hf), "a hook on the HF module survives the swap"
    with bare_modules(hf) as swapped:
        assert swapped
    h.remove()


@pytest.fixture
def gpt2_bridge():
    return wrap_bridge(make_model("gpt2", 320), make_tokenizer())


def _shift_block0(bridge, scale: float):
    """A raw torch hook on the bridge's block-0 component (not on the HF module)."""
    delta = scale * torch.randn(32, generator=torch.Generator().manual_seed(0))  # not constant: LN would undo that

    def hook(_m, _a, out):
        return (out[0] + delta, *out[1:]) if isinstance(out, tuple) else out + delta
    return bridge.blocks[0].register_forward_hook(hook)


def test_both_fast_paths_honour_a_hook_on_a_bridge_component(gpt2_bridge) -> None:
    neurons = [(1, 3), (1, 10)]
    acts = collect_prompt_activations(gpt2_bridge, TEXTS, neurons)
    feats = extract_features(gpt2_bridge, TEXTS, use_cache=False, progress=False)
    h = _shift_block0(gpt2_bridge, 0.5)
    try:
        acts_h = collect_prompt_activations(gpt2_bridge, TEXTS, neurons)
        feats_h = extract_features(gpt2_bridge, TEXTS, use_cache=False, progress=False)
    finally:
        h.remove()
    assert (acts_h - acts).abs().max() > 1e-3
    assert (feats_h - feats).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_path_gives_the_bridge_path_features(family: str) -> None:
    """Features and prompt activations are the same whether the rule swaps the wrappers out or not."""
    bridge = wrap_bridge(make_model(family, 320), make_tokenizer())
    neurons = [(0, 1), (1, 7)]
    force_bridge = [("blocks.0.hook_resid_pre", lambda x, hook: x)]  # identity: only keeps the bridge in place
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    with residual_steering(bridge, direction, 0.5, layer=0):  # a hook on the HF block: fast path stays
        assert not bridge_hooks_active(bridge.original_model)
        fast_f = extract_features(bridge, TEXTS, layer=1, use_cache=False, progress=False)
        fast_a = collect_prompt_activations(bridge, TEXTS, neurons)
        with bridge.hooks(fwd_hooks=force_bridge):
            assert bridge_hooks_active(bridge.original_model)
            slow_f = extract_features(bridge, TEXTS, layer=1, use_cache=False, progress=False)
            slow_a = collect_prompt_activations(bridge, TEXTS, neurons)
    plain = extract_features(bridge, TEXTS, layer=1, use_cache=False, progress=False)
    torch.testing.assert_close(fast_f, slow_f, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast_a, slow_a, atol=1e-5, rtol=1e-4)
    assert (fast_f - plain).abs().max() > 1e-3  # the steering hook fired on the fast path


def test_loaded_models_carry_no_ad_hoc_attributes(tiny_dirs) -> None:
    from interp.model.loading import load_model, model_id

    bridge = load_model(tiny_dirs["llama"], device="cpu", dtype="float32")
    tagged = [k for obj in (bridge, bridge.original_model) for k in vars(obj) if k.startswith("xdetox")]
    assert not tagged, f"attributes set on TransformerLens/HF objects: {tagged}"
    rec = model_record(bridge)
    assert rec.model_id == str(tiny_dirs["llama"]) == model_id(bridge)
    assert rec.native_bos is True and rec.peft is None  # tiny Llama's tokenizer prepends BOS (tiny_models)
