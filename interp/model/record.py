"""What xdetox knows about a model it loaded (:class:`ModelRecord`), kept beside the model.

Its own module so that loading (which fills it) and the tokenization rule (which reads the BOS facts)
both import it without importing each other.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any


def underlying(model: Any) -> Any:
    """Return the model a :class:`interp.model.loading.ModelView` wraps (views carry ``adapter_enabled``), else ``model``."""
    return model.model if hasattr(model, "adapter_enabled") and hasattr(model, "model") else model


@dataclass(eq=False)
class ModelRecord:
    """What xdetox knows about a model it loaded, kept beside the model instead of as attributes
    set on TransformerLens's bridge (one typed place; see :func:`model_record`)."""

    model_id: str | None = None     # name/path[+adapter] the model was loaded from
    peft: Any = None                # the PeftModel whose LoRA layers sit in the bridged HF model, if any
    native_bos: bool | None = None  # whether the model's own tokenizer prepends BOS (read before TL re-opens it)
    bos_policy: str | None = None   # the run's BOS policy (interp.model.tokenization.set_bos_policy)
    missing_parameters: tuple[str, ...] = ()  # on an encoder's HF model: head parameters the checkpoint lacked


_RECORDS: "weakref.WeakKeyDictionary[Any, ModelRecord]" = weakref.WeakKeyDictionary()


def model_record(model: Any) -> ModelRecord:
    """Return the :class:`ModelRecord` of ``model`` (a bridge, HF model or ModelView's model), creating an empty one.

    Keyed weakly by the object itself: the record dies with the model and never keeps it alive.
    """
    model = underlying(model)
    rec = _RECORDS.get(model)
    if rec is None:
        rec = _RECORDS[model] = ModelRecord()
    return rec


__all__ = ["ModelRecord", "model_record", "underlying"]
