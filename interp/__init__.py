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
    "load_model": "interp.model.loading", "adapter_disabled": "interp.model.loading", "ModelView": "interp.model.loading",
    "base_and_tuned": "interp.model.loading", "model_fingerprint": "interp.model.loading",
    "get_adapter": "interp.model.architecture", "ModelAdapter": "interp.model.architecture",
    # languages & data
    "LANGUAGES": "interp.data.languages", "normalize_language": "interp.data.languages",
    "data_root": "interp.core.paths",
    # toxic neurons (stages 2 and 5)
    "find_toxic_neurons": "interp.neurons.ranking", "ToxicNeurons": "interp.neurons.ranking", "probe_direction": "interp.neurons.ranking",
    "collect_generation_activations": "interp.neurons.activations",
    "project_to_vocab": "interp.neurons.vocab", "VocabProjection": "interp.neurons.vocab",
    "key_activations": "interp.neurons.key_activations", "KeyActivations": "interp.neurons.key_activations",
    # interventions
    "NeuronIntervention": "interp.neurons.interventions", "intervene": "interp.neurons.interventions",
    "generate_with_intervention": "interp.neurons.interventions", "intervention_sweep": "interp.neurons.interventions",
    # cross-lingual analysis (stage 6): retrieval, dual multilinguality, correlation
    "retrieval_accuracy": "interp.crosslingual.retrieval", "mean_paired_cosine": "interp.crosslingual.retrieval",
    "layer_representations": "interp.crosslingual.retrieval", "parallel_texts": "interp.crosslingual.retrieval",
    "bilingual_retrieval": "interp.crosslingual.retrieval", "RetrievalResult": "interp.crosslingual.retrieval",
    "dual_multilinguality": "interp.crosslingual.multilinguality", "key_ratio_from_activations": "interp.crosslingual.multilinguality",
    "correlate": "interp.crosslingual.stats",
}

if TYPE_CHECKING:  # the same names, for IDEs and type checkers (tests/test_public_api.py keeps the two in step)
    from interp.neurons.activations import collect_generation_activations
    from interp.model.architecture import ModelAdapter, get_adapter
    from interp.neurons.interventions import NeuronIntervention, generate_with_intervention, intervene, intervention_sweep
    from interp.neurons.key_activations import KeyActivations, key_activations
    from interp.data.languages import LANGUAGES, normalize_language
    from interp.model.loading import ModelView, adapter_disabled, base_and_tuned, load_model, model_fingerprint
    from interp.crosslingual.multilinguality import dual_multilinguality, key_ratio_from_activations
    from interp.neurons.ranking import ToxicNeurons, find_toxic_neurons, probe_direction
    from interp.core.paths import data_root
    from interp.crosslingual.retrieval import (RetrievalResult, bilingual_retrieval, layer_representations, mean_paired_cosine,
                                  parallel_texts, retrieval_accuracy)
    from interp.crosslingual.stats import correlate
    from interp.neurons.vocab import VocabProjection, project_to_vocab

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

    Python binds ``interp.neurons.key_activations`` to the submodule once it is imported (by anyone), which
    would shadow the function ``key_activations`` exported here; that binding is skipped.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
