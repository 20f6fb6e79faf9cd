"""Model loading: local dirs of every family, PEFT adapters sharing base weights, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.model.architecture import UnsupportedArchitectureError
from interp.model.loading import ModelNotFoundError, adapter_disabled, activate, base_and_tuned, load_model, model_fingerprint, model_id
from interp.model.record import model_record
from tiny_models import make_tokenizer

IDS = torch.tensor([[0, 5, 17, 42, 99, 7, 3]])


def _hf_logits(directory: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(directory), attn_implementation="eager").eval()
    with torch.no_grad():
        return m(IDS).logits


def test_load_local_dir_matches_hf(tiny_dirs: dict[str, Path], family: str) -> None:
    bridge = load_model(tiny_dirs[family], device="cpu", dtype="float32")
    with torch.no_grad():
        got = bridge(IDS, return_type="logits")
        direct = bridge.original_model(IDS).logits
    want = _hf_logits(tiny_dirs[family])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(direct, want, atol=1e-5, rtol=1e-5)
    assert bridge.tokenizer is not None and model_id(bridge) == str(tiny_dirs[family])


@pytest.fixture(scope="module")
def llama_adapter(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter dir on the tiny Llama with non-zero lora_B (so tuned != base)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["llama"]), attn_implementation="eager")
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["down_proj", "up_proj"],
                                                 task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter") / "llama-lora"
    peft_model.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_dirs["llama"])
    return out


def _tuned_reference(tiny_dirs: dict[str, Path], adapter: Path) -> torch.Tensor:
    """Tuned logits computed independently: base weights + B @ A * alpha/r folded by hand."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["llama"]), attn_implementation="eager").eval()
    state = load_file(str(adapter / "adapter_model.safetensors"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    params = dict(m.named_parameters())
    with torch.no_grad():
        for key, a in state.items():
            if "lora_A" not in key:
                continue
            b = state[key.replace("lora_A", "lora_B")]
            target = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
            params[target].add_(scale * b @ a)
        return m(IDS).logits


def test_adapter_dir_tuned_and_base_share_weights(tiny_dirs: dict[str, Path], llama_adapter: Path) -> None:
    base_logits = _hf_logits(tiny_dirs["llama"])
    tuned_ref = _tuned_reference(tiny_dirs, llama_adapter)
    assert not torch.allclose(base_logits, tuned_ref, atol=1e-3)

    bridge = load_model(llama_adapter, device="cpu", dtype="float32")  # adapter dir: base read from config
    with torch.no_grad():
        torch.testing.assert_close(bridge(IDS, return_type="logits"), tuned_ref, atol=1e-4, rtol=1e-4)
        with adapter_disabled(bridge) as b:
            torch.testing.assert_close(b(IDS, return_type="logits"), base_logits, atol=1e-5, rtol=1e-5)
        # adapter is back on after the context
        torch.testing.assert_close(bridge(IDS, return_type="logits"), tuned_ref, atol=1e-4, rtol=1e-4)
        base_view, tuned_view = base_and_tuned(bridge)
        with activate(base_view) as b:
            torch.testing.assert_close(b(IDS, return_type="logits"), base_logits, atol=1e-5, rtol=1e-5)
        with activate(tuned_view) as t:
            torch.testing.assert_close(t(IDS, return_type="logits"), tuned_ref, atol=1e-4, rtol=1e-4)
    # one copy of the base weights: both views are the same module, and every base parameter
    # in the PEFT wrapper is the very tensor the bridge runs.
    assert base_view.model is tuned_view.model is bridge
    bridge_ptrs = {p.data_ptr() for p in bridge.original_model.parameters()}
    base_params = [p for n, p in model_record(bridge).peft.named_parameters() if "lora_" not in n]
    assert base_params and all(p.data_ptr() in bridge_ptrs for p in base_params)
    assert model_fingerprint(base_view) != model_fingerprint(tuned_view)


def test_base_plus_adapter_argument(tiny_dirs: dict[str, Path], llama_adapter: Path) -> None:
    bridge = load_model(tiny_dirs["llama"], adapter=llama_adapter, device="cpu", dtype="float32")
    with torch.no_grad():
        torch.testing.assert_close(bridge(IDS, return_type="logits"), _tuned_reference(tiny_dirs, llama_adapter),
                                   atol=1e-4, rtol=1e-4)
    assert str(llama_adapter) in model_id(bridge)


def test_merge_adapter(tiny_dirs: dict[str, Path], llama_adapter: Path) -> None:
    merged = load_model(llama_adapter, merge_adapter=True, device="cpu", dtype="float32")
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS, return_type="logits"), _tuned_reference(tiny_dirs, llama_adapter),
                                   atol=1e-4, rtol=1e-4)
    assert model_record(merged).peft is None
    assert not any("lora_" in n for n, _ in merged.original_model.named_parameters())
    with pytest.raises(ValueError, match="no PEFT adapter"):
        base_and_tuned(merged)


def test_unknown_name_says_how_to_provide_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as e:
        load_model("no-such-org/no-such-model-xyz", device="cpu")
    msg = str(e.value)
    assert "no-such-org/no-such-model-xyz" in msg and "huggingface-cli download" in msg and "local path" in msg
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(tmp_path, device="cpu")


def test_unsupported_architecture_lists_families(tmp_path: Path) -> None:
    import transformers as T

    tok = make_tokenizer()
    cfg = T.CTRLConfig(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, dff=64, n_positions=64)
    T.CTRLLMHeadModel(cfg).save_pretrained(tmp_path / "ctrl")
    tok.save_pretrained(tmp_path / "ctrl")
    with pytest.raises(UnsupportedArchitectureError) as e:
        load_model(tmp_path / "ctrl", device="cpu")
    msg = str(e.value)
    assert "ctrl" in msg and "CTRLLMHeadModel" in msg
    for fam in ("gpt2", "bloom", "llama", "cohere"):
        assert fam in msg.lower()
    assert "GPTNeoXForCausalLM" in msg  # the list of what TransformerLens bridges


def test_architecture_without_a_table_entry_loads(tmp_path: Path) -> None:
    """GPT-NeoX has no entry of ours: the spec comes from TransformerLens's mapping."""
    import transformers as T

    from interp.model.architecture import FAMILIES, get_adapter

    tok = make_tokenizer()
    cfg = T.GPTNeoXConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=64)
    T.GPTNeoXForCausalLM(cfg).save_pretrained(tmp_path / "neox")
    tok.save_pretrained(tmp_path / "neox")
    assert "gpt_neox" not in {t for s in FAMILIES.values() for t in s.model_types}
    bridge = load_model(tmp_path / "neox", device="cpu")
    a = get_adapter(bridge)
    assert (a.family, a.n_layers, a.d_model, a.d_mlp) == ("gpt_neox", 1, 32, 64)
    _, cache = bridge.run_with_cache(IDS, names_filter=[a.hook_name(0)])
    assert cache[a.hook_name(0)].shape[-1] == 64


def test_loaded_module_is_wrapped(tiny_dirs: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["gpt2"]), attn_implementation="eager").eval()
    bridge = load_model(hf)
    assert bridge.original_model is hf  # no copy
    with torch.no_grad():
        torch.testing.assert_close(bridge(IDS, return_type="logits"), hf(IDS).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fam", ["gpt2", "bloom", "llama", "cohere"])
def test_lora_on_every_linear_layer_is_seen_by_the_bridge(fam: str, tiny_dirs, tmp_path) -> None:
    """A LoRA on all linear layers (joint QKV included) gives PEFT's logits; the base view gives the base's."""
    from peft import LoraConfig, get_peft_model

    from interp.model.architecture import get_adapter
    from interp.model.loading import adapter_disabled, load_hf_model, load_model

    model, _ = load_hf_model(tiny_dirs[fam], device="cpu")
    ids = torch.tensor([[2, 5, 9, 17, 30]])
    with torch.no_grad():
        base = model(input_ids=ids).logits.clone()
    targets = get_adapter(model).lora_target_modules()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=targets, init_lora_weights=False)).eval()
    peft.save_pretrained(str(tmp_path / "a"))
    with torch.no_grad():
        tuned = peft(input_ids=ids).logits.clone()
    assert (tuned - base).abs().max() > 1e-3
    bridge = load_model(str(tiny_dirs[fam]), adapter=tmp_path / "a", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(bridge(ids), tuned, rtol=1e-4, atol=1e-4)
        with adapter_disabled(bridge):
            torch.testing.assert_close(bridge(ids), base, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(bridge(ids), tuned, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- fingerprint cost and memo
def _fresh_fingerprint(model) -> str:
    """Oracle: the fingerprint with the memo emptied (every parameter summed again)."""
    import interp.model.loading as L

    saved = dict(L._SUMS)
    L._SUMS.clear()
    try:
        return model_fingerprint(model)
    finally:
        L._SUMS.update(saved)


def test_fingerprint_is_memoised_and_follows_every_weight_change(monkeypatch) -> None:
    import interp.model.loading as L
    from tiny_models import make_model

    model = make_model("gpt2", 320)
    n_params = len(list(model.parameters()))
    calls: list[int] = []

    fp0 = model_fingerprint(model)
    monkeypatch.setattr(L, "_SUM_CHUNK", 1 << 22)
    counted = L._param_sum

    def spy(p, flat, sample):
        before = L._SUMS.get(id(p))
        out = counted(p, flat, sample)
        calls.append(int(L._SUMS.get(id(p)) is not before))
        return out

    monkeypatch.setattr(L, "_param_sum", spy)
    assert model_fingerprint(model) == fp0 and sum(calls) == 0 and len(calls) == n_params  # all memo hits
    # An optimizer step (in-place, bumps the version counter) changes the fingerprint, memo or not.
    w = model.transformer.h[0].mlp.c_proj.weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(torch.tensor([[1, 2, 3]])).logits ** 2).sum().backward()
    opt.step()
    fp1 = model_fingerprint(model)
    assert fp1 != fp0 and fp1 == _fresh_fingerprint(model)
    # Writes through .data bypass the version counter: a LoRA-merge-like update of the whole matrix, and
    # one sampled element in the middle, are both still seen (the oracle recomputes everything).
    for edit in (lambda d: d.add_(0.01), lambda d: d.view(-1)[(d.numel() // 4096) * 7].add_(1.0)):
        before = model_fingerprint(model)
        with torch.no_grad():
            edit(w.data)
        after = model_fingerprint(model)
        assert after != before and after == _fresh_fingerprint(model)


def _python_snippet(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter at the repo root (so its memory readings are its own); return its words."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.split()


def test_fingerprint_makes_no_full_size_copy(tmp_path) -> None:
    """A 64M-element fp16 weight (128 MB) must not be copied to float32 (256 MB) to be summed."""
    code = (
        "import resource, torch\n"
        "from torch import nn\n"
        "from interp.model.loading import _param_sum\n"
        "p = nn.Parameter(torch.full((1 << 26,), 0.5, dtype=torch.float16), requires_grad=False)\n"
        "flat = p.detach().reshape(-1); s = torch.cat([flat[:64], flat[-64:]]).float()\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "text = _param_sum(p, flat, s)\n"
        "r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(text, (r1 - r0) // 1024)\n")
    out = _python_snippet(code)
    assert float(out[0]) == pytest.approx(0.5 * (1 << 26), rel=1e-6)  # independent: n * 0.5
    assert int(out[1]) < 100, f"peak memory grew by {out[1]} MB while summing"


def test_release_freed_heap_returns_fragmented_free_memory() -> None:
    """Freed tensors below glibc's mmap threshold stay resident (as bridging's QKV split leaves them) until
    trimmed: release_freed_heap must give them back, and wrap_bridge calls it."""
    import sys

    import os

    if sys.platform != "linux":
        pytest.skip("glibc malloc_trim is Linux-only")
    if os.environ.get("LD_PRELOAD") or any(k.startswith("MALLOC_") for k in os.environ):
        pytest.skip("another allocator (LD_PRELOAD) or tuned glibc thresholds: the heap layout differs")
    code = (
        "import torch\n"
        "from interp.model.loading import release_freed_heap\n"
        "def anon():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon')) // 1024\n"
        "x = torch.ones(1 << 22); del x  # one freed 16 MB chunk raises glibc's mmap threshold to 16 MB\n"
        "tmp, kept = [], []\n"
        "for _ in range(48):  # a freed temporary between kept tensors, as a split leaves them\n"
        "    tmp.append(torch.ones((1 << 22) - 4096)); kept.append(torch.ones(1 << 20))\n"
        "del tmp\n"
        "before = anon(); release_freed_heap(); print(before, anon())\n")
    out = _python_snippet(code)
    before, after = map(int, out)
    assert before - after > 400, f"RssAnon {before} MB -> {after} MB: the freed 750 MB stayed resident"


def test_wrap_bridge_releases_the_freed_heap(tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import interp.model.loading as loading

    calls = []
    monkeypatch.setattr(loading, "release_freed_heap", lambda: calls.append(1))
    load_model(tiny_dirs["gpt2"])
    assert calls == [1]
