"""Views of one loaded model: the base and the DPO-tuned model sharing one set of base weights.

:class:`ModelView` pairs a model with whether its PEFT adapter is active; :func:`adapter_disabled`
runs the base of an adapter-carrying bridge; :func:`activate` yields a usable model for a bridge, HF
model or view. Kept apart from loading so that what scores models (``lm_loss``) needs no loader.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from interp.model.record import model_record


def _joint_qkv_bridges(bridge: Any) -> list[nn.Module]:
    """Return the attention bridges that copy a joint QKV weight into separate q/k/v at wrap time."""
    return [m for m in bridge.modules() if callable(getattr(m, "split_qkv_matrix", None))
            and getattr(m, "original_component", None) is not None]


@torch.no_grad()
def _sync_joint_qkv(bridge: Any, *, adapter_enabled: bool) -> None:
    """Re-split joint QKV weights so the bridge sees the adapter's current state.

    TransformerBridge splits a joint QKV projection (GPT-2 ``c_attn``, BLOOM ``query_key_value``)
    into q/k/v copies when it wraps the model, so a LoRA on that projection would be bypassed.
    We fold the active adapter into the base weights, re-split, and unfold again; with the adapter
    disabled we re-split the plain base weights (views, as TransformerLens makes them). Other
    layers call the live PEFT modules. Costs one extra copy of the QKV weights while enabled.
    """
    peft_model = model_record(bridge).peft
    attn = _joint_qkv_bridges(bridge)
    if peft_model is None or not attn:
        return
    merged = False
    if adapter_enabled:
        peft_model.merge_adapter()
        merged = True
    try:
        for m in attn:
            m.set_original_component(m.original_component)
            if merged:  # the split slices are views of the base weight: keep the merged values
                for part in (m.q, m.k, m.v):
                    lin = part.original_component
                    lin.weight = nn.Parameter(lin.weight.detach().clone(), requires_grad=False)
                    if getattr(lin, "bias", None) is not None:
                        lin.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
    finally:
        if merged:
            peft_model.unmerge_adapter()


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """Run the base model of an adapter-carrying bridge (no-op for a plain model)."""
    peft_model = model_record(model).peft
    if peft_model is None:
        yield model
        return
    with peft_model.disable_adapter():
        _sync_joint_qkv(model, adapter_enabled=False)
        try:
            yield model
        finally:
            _sync_joint_qkv(model, adapter_enabled=True)


@dataclass
class ModelView:
    """A model together with whether its PEFT adapter is active, so base and tuned models can
    be compared while sharing one copy of the base weights."""

    model: Any
    adapter_enabled: bool = True

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """Yield the underlying model in this view's adapter state."""
        if self.adapter_enabled:
            yield self.model
        else:
            with adapter_disabled(self.model) as m:
                yield m


@contextlib.contextmanager
def activate(model: Any) -> Iterator[Any]:
    """Yield a usable model for ``model``, which may be a bridge, HF model or :class:`ModelView`."""
    if isinstance(model, ModelView):
        with model.active() as m:
            yield m
    else:
        yield model


def base_and_tuned(model: Any) -> tuple[ModelView, ModelView]:
    """Return (base view, tuned view) of an adapter-carrying bridge, sharing weights."""
    if model_record(model).peft is None:
        raise ValueError("model carries no PEFT adapter; load it with load_model(base, adapter=DIR)")
    return ModelView(model, adapter_enabled=False), ModelView(model, adapter_enabled=True)


__all__ = ["ModelView", "activate", "adapter_disabled", "base_and_tuned"]
