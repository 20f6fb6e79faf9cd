"""DPO/QLoRA training (``train_dpo``, ``DPOTrainConfig``) and, in ``detox_train.evaluate``, evaluation.

Imports are lazy so that ``import detox_train`` stays light (no TRL/transformers until used).
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "train_dpo": "detox_train.dpo",
    "DPOTrainConfig": "detox_train.config",
    "merge_adapter": "detox_train.merge",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detox_train' has no attribute {name!r}")


__all__ = ["train_dpo", "DPOTrainConfig", "merge_adapter"]
