"""Pooled residual-stream features for probes: batched, length-bucketed, streamed and cached.

The default feature is the paper's: the final hidden state *after the final norm*, mean-pooled
over non-pad tokens. ``layer=l`` gives the residual stream after block ``l`` instead. Features
are computed once per (model fingerprint, texts, layer, pooling, max_length) and cached as
safetensors, so a probe never recomputes the frozen LM (the reference recomputed it every epoch).
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.neurons.activations import bare_modules
from interp.model.architecture import unwrap, get_adapter, hf_model_of
from interp.model.tokenization import tokenizer_fingerprint  # noqa: F401  (part of the feature-cache key; re-exported)

Pooling = Literal["mean", "last", "max"]
POOLINGS: tuple[str, ...] = ("mean", "last", "max")
FEATURE_CACHE_SUBDIR = "probe_features"
# Texts tokenized and length-sorted together; bounds memory independently of the dataset size.
CHUNK_BATCHES = 32

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by the capture hook: nothing after the captured module is needed."""


def pool_hidden(hidden: Float[Tensor, "batch pos d_model"], mask: Int[Tensor, "batch pos"],
                pooling: Pooling = "mean") -> Float[Tensor, "batch d_model"]:
    """Return per-sentence pooled hidden states over the positions where ``mask`` is 1.

    Works for left and right padding alike: ``last`` takes the last position whose mask is 1.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if hidden.shape[:2] != mask.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and mask {tuple(mask.shape)} disagree on (batch, pos)")
    m = mask.to(hidden.dtype)
    if bool((m.sum(-1) == 0).any()):
        raise ValueError("a sentence has no unmasked token; empty texts cannot be pooled")
    if pooling == "mean":
        return (hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)
    if pooling == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)
    pos = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.bool() * (pos + 1)).argmax(-1)  # index of the last real token
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def texts_hash(texts: Sequence[str]) -> str:
    """Return a sha256 over the texts in order (the data part of the feature-cache key)."""
    h = hashlib.sha256(str(len(texts)).encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def _resolve_layer(model: Any, layer: int | None) -> int | None:
    """Return ``layer`` as a non-negative block index (None = final layer after the final norm)."""
    if layer is None:
        return None
    n = get_adapter(model).n_layers
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise ValueError(f"layer={layer} out of range: the model has {n} blocks (0..{n - 1}, or None for "
                         "the final layer after the final norm)")
    return idx


def feature_name(layer: int | None, pooling: str) -> str:
    """Return a readable name of the feature, e.g. ``final-norm/mean`` or ``resid-post-5/last``."""
    return f"{'final-norm' if layer is None else f'resid-post-{layer}'}/{pooling}"


def _max_positions(hf: nn.Module) -> int | None:
    cfg = hf.config
    for attr in ("max_position_embeddings", "n_positions"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _tokenize(rule: Any, texts: Sequence[str], *, max_length: int) -> list[list[int]]:
    """Return the sentence ids of each text under the run's tokenization rule, cut to ``max_length``."""
    seqs, _ = rule.encode(list(texts), "sentence", max_length=max_length)
    for i, seq in enumerate(seqs):
        if not seq:
            raise ValueError(f"text #{i} tokenizes to no tokens (empty string?); drop empty texts before "
                             "extracting features")
    return seqs


def _pad(seqs: list[list[int]], pad_id: int, side: str) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[r, sl] = torch.tensor(s, dtype=torch.long)
        mask[r, sl] = 1
    return ids, mask


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


class _Capture:
    """Forward hook that stores a module's output (first element of tuples) and stops the pass."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        self.value = output[0] if isinstance(output, (tuple, list)) else output
        raise _StopForward


def _capture_module(model: Any, layer: int | None) -> nn.Module:
    """Return the module whose output is the wanted feature: the final norm, or block ``layer``."""
    adapter = get_adapter(model)
    return adapter.final_norm() if layer is None else adapter.block(layer)


def _cache_file(cache_dir: Path, key: dict[str, Any]) -> Path:
    from interp.core.artifacts import stable_hash

    return cache_dir / f"{stable_hash(key, n=24)}.safetensors"


def extract_features(model: Any, texts: list[str], *, layer: int | None = None, pooling: Pooling = "mean",
                     batch_size: int = 32, cache_dir: str | os.PathLike[str] | None = None,
                     progress: bool = True, tokenizer: Any = None, max_length: int = 512,
                     padding_side: Literal["right", "left"] | None = None,
                     use_cache: bool = True, fingerprint: str | None = None) -> Float[Tensor, "n d_model"]:
    """Return pooled hidden states [n, d_model] (float32, CPU) for ``texts``, one row per text.

    ``layer=None`` is the final layer after the final norm (the paper's feature); ``layer=l`` is
    the residual stream after block ``l`` (negative indices count from the end). ``model`` is a
    TransformerBridge or an HF causal LM (then pass ``tokenizer``). Texts are tokenized without
    the tokenizer's own specials, then BOS by the run's tokenization rule
    (:mod:`interp.model.tokenization`; ``auto`` follows the model's own tokenizer). Results are cached under ``cache_dir`` (default: the xdetox cache)
    keyed by model fingerprint, text hash, layer, pooling and max_length; ``use_cache=False``
    skips the cache. A :class:`interp.model.loading.ModelView` runs in its adapter state.
    """
    from tqdm.auto import tqdm

    from interp.core.artifacts import load_tensors, save_tensors
    from interp.model.loading import ModelView, activate, model_fingerprint, model_id
    from interp.core.paths import cache_dir as default_cache_dir

    if isinstance(model, ModelView):
        fp = fingerprint or (model_fingerprint(model) if use_cache else None)
        with activate(model) as inner:
            return extract_features(inner, texts, layer=layer, pooling=pooling, batch_size=batch_size,
                                    cache_dir=cache_dir, progress=progress, tokenizer=tokenizer,
                                    max_length=max_length, padding_side=padding_side, use_cache=use_cache,
                                    fingerprint=fp)
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty: need at least one text to extract features from")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, expected str")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layer = _resolve_layer(model, layer)
    hf = hf_model_of(model)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("no tokenizer: pass tokenizer=... for a plain HF model (a TransformerBridge carries one)")
    adapter = get_adapter(model)
    from interp.model.tokenization import token_rule

    rule = token_rule(model, tokenizer=tokenizer if tokenizer is not getattr(model, "tokenizer", None) else None)
    limit = _max_positions(hf)
    max_length = min(max_length, limit) if limit else max_length
    side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")

    path: Path | None = None
    if use_cache:
        key = {"fingerprint": fingerprint or model_fingerprint(model), "data": texts_hash(texts), "layer": layer,
               "pooling": pooling, "max_length": max_length, "bos": rule.add_bos, "v": 1,
               "tokenizer": tokenizer_fingerprint(tokenizer),
               **({"eos": True} if rule.add_eos else {})}
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir(FEATURE_CACHE_SUBDIR)
        path = _cache_file(root, key)
        if path.is_file():
            from interp.core.artifacts import CorruptFileError

            try:
                tensors, _ = load_tensors(path)
                feats = tensors.get("features")
                if feats is not None and tuple(feats.shape) == (len(texts), adapter.d_model):
                    return feats
                problem = "holds no features of the expected shape"
            except CorruptFileError as e:
                problem = str(e)
            # Derived data: drop the damaged entry and compute it again.
            log.warning("feature cache entry %s is damaged (%s); rebuilding it", path, problem)
            path.unlink(missing_ok=True)

    # Encoders read "<s> text </s>" (e5 mean-pools over all of it), right-padded, positions their own.
    if adapter.spec.is_encoder:
        side = "right"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(hf.parameters()).device
    takes_positions = "position_ids" in inspect.signature(hf.forward).parameters and not adapter.spec.is_encoder
    out = torch.empty((len(texts), adapter.d_model), dtype=torch.float32)
    capture = _Capture()
    target = _capture_module(model, layer)
    was_training = hf.training
    hf.eval()
    bar = tqdm(total=len(texts), desc=f"features {feature_name(layer, pooling)}", disable=not progress,
               unit="text")
    bare = bare_modules(hf)  # the one fast-path rule (interp.neurons.activations.bridge_hooks_active)
    handle = None
    try:
        swapped = bare.__enter__()
        # With wrappers swapped out, the hook must sit on the module that now runs.
        handle = (unwrap(target) if swapped else target).register_forward_hook(capture)
        with torch.inference_mode():
            for chunk in _chunks(len(texts), batch_size * CHUNK_BATCHES):
                seqs = _tokenize(rule, [texts[i] for i in chunk], max_length=max_length)
                # Length bucketing: similar lengths share a batch, so little compute goes to padding.
                order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]))
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    ids, mask = _pad([seqs[j] for j in rows], pad_id, side)
                    ids, mask = ids.to(device), mask.to(device)
                    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": False}
                    if takes_positions:
                        # Positions count real tokens only, so left padding does not shift them.
                        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
                    capture.value = None
                    try:
                        hf(ids, **kwargs)
                    except _StopForward:
                        pass
                    if capture.value is None:
                        raise RuntimeError(f"the hook on {feature_name(layer, pooling)} never fired")
                    pooled = pool_hidden(capture.value.float(), mask, pooling)
                    out[torch.tensor([chunk[j] for j in rows])] = pooled.cpu()
                    bar.update(len(rows))
    finally:
        if handle is not None:
            handle.remove()
        bare.__exit__(None, None, None)
        bar.close()
        if was_training:
            hf.train()
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"non-finite features from {model_id(model)} at {feature_name(layer, pooling)}; "
                                 "try dtype float32")
    if path is not None:
        save_tensors(path, {"features": out}, metadata={**key, "model_id": model_id(model), "n": len(texts)})
    return out


__all__ = ["extract_features", "pool_hidden", "texts_hash", "feature_name", "POOLINGS"]
