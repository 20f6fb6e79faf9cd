"""xdetox ``interp``: model loading, toxic neurons, key activations, interventions, retrieval,
dual multilinguality and the paper figures, on TransformerLens 4 bridges over HF models.

Names are imported lazily so ``import interp`` stays cheap; ``dir(interp)`` lists them all and the
``TYPE_CHECKING`` block below lets IDEs and type checkers see them. See ``interp/README.md`` for the map.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # loading & architecture
    "load_model": "interp.loading", "adapter_disabled": "interp.loading", "ModelView": "interp.loading",
    "base_and_tuned": "interp.loading", "model_fingerprint": "interp.loading",
    "get_adapter": "interp.architecture", "ModelAdapter": "interp.architecture",
    # languages & data
    "LANGUAGES": "interp.languages", "normalize_language": "interp.languages",
    "data_root": "interp.paths",
    # toxic neurons (stages 2 and 5)
    "find_toxic_neurons": "interp.neurons", "ToxicNeurons": "interp.neurons", "probe_direction": "interp.neurons",
    "collect_generation_activations": "interp.activations",
    "project_to_vocab": "interp.vocab", "VocabProjection": "interp.vocab",
    "key_activations": "interp.key_activations", "KeyActivations": "interp.key_activations",
    # interventions
    "NeuronIntervention": "interp.interventions", "intervene": "interp.interventions",
    "generate_with_intervention": "interp.interventions", "intervention_sweep": "interp.interventions",
    # cross-lingual analysis (stage 6): retrieval, dual multilinguality, correlation
    "retrieval_accuracy": "interp.retrieval", "mean_paired_cosine": "interp.retrieval",
    "layer_representations": "interp.retrieval", "parallel_texts": "interp.retrieval",
    "bilingual_retrieval": "interp.retrieval", "RetrievalResult": "interp.retrieval",
    "dual_multilinguality": "interp.multilinguality", "key_ratio_from_activations": "interp.multilinguality",
    "correlate": "interp.stats",
}

if TYPE_CHECKING:  # the same names, for IDEs and type checkers (tests/test_public_api.py keeps the two in step)
    from interp.activations import collect_generation_activations
    from interp.architecture import ModelAdapter, get_adapter
    from interp.interventions import NeuronIntervention, generate_with_intervention, intervene, intervention_sweep
    from interp.key_activations import KeyActivations, key_activations
    from interp.languages import LANGUAGES, normalize_language
    from interp.loading import ModelView, adapter_disabled, base_and_tuned, load_model, model_fingerprint
    from interp.multilinguality import dual_multilinguality, key_ratio_from_activations
    from interp.neurons import ToxicNeurons, find_toxic_neurons, probe_direction
    from interp.paths import data_root
    from interp.retrieval import (RetrievalResult, bilingual_retrieval, layer_representations, mean_paired_cosine,
                                  parallel_texts, retrieval_accuracy)
    from interp.stats import correlate
    from interp.vocab import VocabProjection, project_to_vocab

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Return the exported names, the module's dunders and its imported submodules (Jupyter's tab completion)."""
    own = {n for n, v in globals().items() if (n.startswith("__") and n.endswith("__"))
           or (isinstance(v, ModuleType) and v.__name__ == f"{__name__}.{n}")}
    return sorted(own | set(_EXPORTS))


class _Package(ModuleType):
    """``interp`` itself: importing a submodule never hides the export of the same name.

    Python binds ``interp.key_activations`` to the submodule once it is imported (by anyone), which
    would shadow the function ``key_activations`` exported here; that binding is skipped.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
