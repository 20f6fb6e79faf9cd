"""The paper's model shapes as random-init models: one place for every benchmark's ``--shape``.

No weights can be downloaded here, but a random-init model with the real config (layers, widths,
heads, GQA, vocabulary, gated MLP, logit scale) runs the same code with the same memory and
arithmetic as the real checkpoint. Configs are copied from the public ``config.json`` of each
checkpoint named below. ``dtype="auto"`` is the paper preset's policy (``model.dtype: auto``):
bf16 on a bf16-capable GPU, fp32 otherwise (``interp.model.loading._resolve_dtype``). Training follows
the DPO preset named per shape (``paper-full`` for the small models, ``paper-qlora``: NF4 + double
quantization + bf16 compute, for the 7-8B ones).

Use: ``from shapes import SHAPES, add_shape_arg, build`` (``benchmarks/`` is put on ``sys.path``
by each script).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@dataclass(frozen=True)
class Shape:
    """One model shape: its HF config and the policies the paper runs it with."""

    name: str
    checkpoint: str                          # the real model this shape copies
    make_config: Callable[[], Any]
    dpo_preset: str                          # detox_train preset the paper uses at this size
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> Any:
        return self.make_config()


def _gpt2(**kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers as T

        return T.GPT2Config(**kw)
    return make


def _bloom(**kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers as T

        return T.BloomConfig(**kw)
    return make


def _llama(**kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers as T

        return T.LlamaConfig(**kw)
    return make


def _cohere(**kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        import transformers as T

        return T.CohereConfig(**kw)
    return make


_SPECIAL = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1)

SHAPES: dict[str, Shape] = {
    # The benchmarks' historical CPU shape: a 4-layer GPT-2, d_model 256, on the tiny BPE vocabulary.
    "tiny": Shape("tiny", "(none: tests' tiny GPT-2)", _gpt2(n_embd=256, n_layer=4, n_head=4, n_inner=1024,
                                                              n_positions=256, vocab_size=320, **_SPECIAL),
                  "paper-full"),
    "mgpt": Shape("mgpt", "ai-forever/mGPT", _gpt2(n_embd=2048, n_layer=24, n_head=16, n_inner=8192, n_positions=2048,
                                                   vocab_size=100000, activation_function="gelu_new",
                                                   layer_norm_epsilon=1e-5, tie_word_embeddings=True, **_SPECIAL),
                  "paper-full", "GPT-2 architecture, Conv1D storage, tied embeddings"),
    "bloom-1b7": Shape("bloom-1b7", "bigscience/bloom-1b7",
                       _bloom(hidden_size=2048, n_layer=24, n_head=16, vocab_size=250880, layer_norm_epsilon=1e-5,
                              tie_word_embeddings=True, **_SPECIAL), "paper-full", "ALiBi, d_mlp = 4 x 2048"),
    "bloom-7b1": Shape("bloom-7b1", "bigscience/bloom-7b1",
                       _bloom(hidden_size=4096, n_layer=30, n_head=32, vocab_size=250880, layer_norm_epsilon=1e-5,
                              tie_word_embeddings=True, **_SPECIAL), "paper-qlora"),
    "llama2-7b": Shape("llama2-7b", "meta-llama/Llama-2-7b-hf",
                       _llama(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
                              rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, **_SPECIAL),
                       "paper-qlora", "gated SiLU MLP, no GQA"),
    "llama3-8b": Shape("llama3-8b", "meta-llama/Meta-Llama-3-8B",
                       _llama(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                              rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, **_SPECIAL),
                       "paper-qlora", "gated SiLU MLP, GQA 32/8"),
    "aya23-8b": Shape("aya23-8b", "CohereForAI/aya-23-8B",
                      _cohere(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=8, vocab_size=256000, max_position_embeddings=8192,
                              layer_norm_eps=1e-5, rope_theta=10000.0, logit_scale=0.0625, use_qk_norm=False,
                              tie_word_embeddings=True, **_SPECIAL),
                      "paper-qlora", "Cohere: parallel block, gated MLP, GQA 32/8, logit_scale 1/16"),
}


def add_shape_arg(ap: argparse.ArgumentParser, default: str = "tiny") -> None:
    """Add ``--shape`` (and ``--dtype``) to a benchmark's parser."""
    ap.add_argument("--shape", default=default, choices=list(SHAPES),
                    help="random-init model with this checkpoint's real config (default: %(default)s)")
    ap.add_argument("--dtype", default="auto",
                    help="weights dtype: auto (the paper preset's policy: bf16 on a bf16 GPU, else fp32), fp32, bf16")


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """Return the torch dtype for ``dtype`` on ``device`` with the project's policy."""
    from interp.model.loading import _resolve_dtype

    return _resolve_dtype(dtype, device)


def shape_tokenizer(vocab_size: int) -> Any:
    """Return a byte-level BPE tokenizer with exactly ``vocab_size`` ids.

    The tests' small BPE (trained in well under a second) is padded with unreachable placeholder
    tokens, so every id a random model can emit decodes, while texts tokenize to realistic lengths.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from tiny_models import make_tokenizer

    base = make_tokenizer(min(320, vocab_size))
    if len(base) >= vocab_size:
        return base
    d = json.loads(base.backend_tokenizer.to_str())
    vocab = d["model"]["vocab"]
    n = len(base)
    for i in range(n, vocab_size):
        vocab[f"<x{i}>"] = i
    tok = Tokenizer.from_str(json.dumps(d))
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<pad>", unk_token=None)
    assert len(out) == vocab_size, (len(out), vocab_size)
    return out


def build(name: str, *, device: str = "cpu", dtype: str | torch.dtype | None = "auto", seed: int = 0,
          tokenizer: bool = True) -> tuple[Any, Any]:
    """Return ``(hf_model, tokenizer)``: a random-init model of shape ``name`` in eval mode (eager attention)."""
    import transformers as T

    shape = SHAPES[name]
    cfg = shape.config()
    torch.manual_seed(seed)
    td = resolve_dtype(dtype, device)
    with torch.device(device):
        model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=td)
    model.eval()
    tok = shape_tokenizer(cfg.vocab_size) if tokenizer else None
    return model, tok


def materialize(name: str, *, dtype: str | torch.dtype | None = "auto", device: str = "cpu",
                root: str | Path | None = None) -> Path:
    """Return a ``save_pretrained`` directory (model + tokenizer) of shape ``name`` in the resolved dtype.

    Built once and reused (a random init of a 1-8B model takes minutes on a small CPU); the
    directory carries ``xdetox_shape.json`` naming the shape, dtype and seed, and one that does not
    match is rebuilt. Loading it goes through the project's real loader, as a checkpoint would.
    """
    import os
    import shutil
    import tempfile

    td = resolve_dtype(dtype, device)
    root = Path(root or os.environ.get("XDETOX_SHAPES_DIR", Path(tempfile.gettempdir()) / "xdetox-shapes"))
    target = root / f"{name}-{str(td).removeprefix('torch.')}"
    stamp = {**describe(name), "dtype": str(td), "seed": 0, "v": 1}
    marker = target / "xdetox_shape.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target
    model, tok = build(name, device="cpu", dtype=td)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "xdetox_shape.json").write_text(json.dumps(stamp))
    del model
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def weights_bytes(model: Any) -> int:
    """Return the bytes of the model's parameters and buffers (tied weights counted once)."""
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def bare_view(model: Any) -> Any:
    """Return an unwrapped structural copy of an HF model that *shares* its parameters and buffers.

    Take it before wrapping the model in a TransformerBridge (which replaces submodules in place):
    the copy runs bare HF code on the same weights, so a baseline costs no second copy of the model.
    """
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes.

    Linux ``VmHWM`` (high-water mark of this process image), not ``ru_maxrss``: the latter keeps
    the parent's peak across fork + exec, so a child started by a big parent would inherit it.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def sync(device: str) -> None:
    """Wait for the GPU's queued work (nothing on CPU), so that a wall-clock reading covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_timer(device: str) -> Any:
    """Return a ``transformers.TrainerCallback`` whose ``.steps`` collects each training step's seconds."""
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.steps: list[float] = []

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            sync(device)
            self.steps.append(time.perf_counter() - self.t0)

    return StepTimer()


def describe(name: str) -> dict[str, Any]:
    """Return a JSON-able summary of shape ``name`` (for manifests and READMEs)."""
    s = SHAPES[name]
    c = s.config()
    keys = ("n_layer", "num_hidden_layers", "n_embd", "hidden_size", "n_inner", "intermediate_size", "n_head",
            "num_attention_heads", "num_key_value_heads", "vocab_size", "logit_scale", "tie_word_embeddings")
    return {"shape": name, "checkpoint": s.checkpoint, "model_type": c.model_type, "dpo_preset": s.dpo_preset,
            **{k: getattr(c, k) for k in keys if getattr(c, k, None) is not None}}


__all__ = ["SHAPES", "Shape", "add_shape_arg", "build", "materialize", "bare_view", "weights_bytes", "shape_tokenizer",
           "resolve_dtype", "peak_rss_bytes", "describe"]
