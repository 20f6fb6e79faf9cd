"""xdetox ``interp``: model loading, toxic neurons, key activations, interventions, retrieval,
dual multilinguality and the paper figures, on TransformerLens 4 bridges over HF models.

Names are imported lazily so ``import interp`` stays cheap; see ``interp/README.md`` for the map.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # loading & architecture
    "load_model": "interp.loading", "adapter_disabled": "interp.loading", "ModelView": "interp.loading",
    "base_and_tuned": "interp.loading", "model_fingerprint": "interp.loading",
    "get_adapter": "interp.architecture", "ModelAdapter": "interp.architecture",
    # languages & data
    "LANGUAGES": "interp.languages", "normalize_language": "interp.languages",
    "data_root": "interp.paths",
    # toxic neurons (stages 2 and 5)
    "find_toxic_neurons": "interp.neurons", "ToxicNeurons": "interp.neurons",
    "collect_generation_activations": "interp.activations",
    "project_to_vocab": "interp.vocab",
    "key_activations": "interp.key_activations",
    "NeuronIntervention": "interp.interventions", "intervene": "interp.interventions",
    # cross-lingual analysis (stage 6)
    "retrieval_accuracy": "interp.retrieval", "mean_paired_cosine": "interp.retrieval",
    "dual_multilinguality": "interp.multilinguality", "correlate": "interp.stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
