"""Import the paper's ``english-probe.pt`` (a pickled ``nn.Linear``) without unpickling code.

``torch.load(weights_only=True)`` runs a restricted unpickler that only rebuilds tensors and
plain containers; classes must be allow-listed explicitly. We allow exactly ``torch.nn.Linear``
(via ``torch.serialization.safe_globals``, scoped to this one call), so a file that names any
other global - e.g. ``os.system`` in a ``__reduce__`` payload - is rejected before anything runs.
Accepted contents: an ``nn.Linear(d, 1)``, its ``state_dict`` (``weight`` [1, d], optional
``bias``), or a bare weight tensor.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probes.probe import ToxicityProbe

# The only classes a reference probe file may name; everything else is refused.
SAFE_GLOBALS: tuple[type, ...] = (nn.Linear,)


def _weights_of(obj: Any, path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(obj, nn.Linear):
        return obj.weight.detach(), None if obj.bias is None else obj.bias.detach()
    if isinstance(obj, dict) and "weight" in obj:
        return obj["weight"], obj.get("bias")
    if isinstance(obj, torch.Tensor):
        return obj, None
    raise ValueError(f"{path}: holds a {type(obj).__name__}; expected an nn.Linear(d_model, 1), its state_dict "
                     "or a weight tensor")


def import_reference_probe(path: str | os.PathLike[str]) -> ToxicityProbe:
    """Return a :class:`ToxicityProbe` holding the weights of a reference ``english-probe.pt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the paper's probe is english-probe.pt)")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused to load: the file needs objects outside the allow-list "
                         f"({', '.join(c.__module__ + '.' + c.__qualname__ for c in SAFE_GLOBALS)}); it is not a "
                         f"plain nn.Linear probe and was not executed. Detail: {str(e).splitlines()[-1][:300]}") from e
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, TypeError, AttributeError) as e:
        # torch's restricted unpickler reports a non-pickle byte as a bare KeyError (e.g. "101").
        raise ValueError(f"{path}: not a torch checkpoint (not a pickled nn.Linear probe: "
                         f"{type(e).__name__} {str(e)[:100]}); pass the paper's english-probe.pt") from e
    weight, bias = _weights_of(obj, path)
    weight = weight.detach().float().reshape(-1, weight.shape[-1]) if weight.dim() > 1 else weight.float()[None]
    if weight.shape[0] != 1:
        raise ValueError(f"{path}: weight has shape {tuple(weight.shape)}; a toxicity probe is [1, d_model]")
    if not torch.isfinite(weight).all():
        raise ValueError(f"{path}: weight holds NaN/inf")
    try:
        return ToxicityProbe.from_weights(weight, bias, meta={
            "source": str(path), "imported": True, "layer": None, "pooling": "mean",
            "note": "imported reference probe (final layer after the final norm, mean-pooled)"})
    except ValueError as e:
        raise ValueError(f"{path}: {e}; pass the paper's english-probe.pt") from e


__all__ = ["import_reference_probe", "SAFE_GLOBALS"]
