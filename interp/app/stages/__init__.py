"""The pipeline's stages: one function per stage, ``(pipe, stage_dir) -> (summary, outputs)``.

``interp.app.pipeline.Pipeline`` keys, caches, locks and orders them; each function here only computes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interp.app.stages.correlation import stage_correlation
from interp.app.stages.dpo import stage_dpo
from interp.app.stages.encoder import stage_encoder
from interp.app.stages.evaluation import stage_generate, stage_metrics, stage_score
from interp.app.stages.intervention import stage_intervention
from interp.app.stages.key_activations import stage_key_activations
from interp.app.stages.model import stage_model
from interp.app.stages.neurons import stage_neurons
from interp.app.stages.probe import stage_probe
from interp.app.stages.report import stage_report
from interp.app.stages.retrieval import stage_retrieval

STAGE_FUNCTIONS: dict[str, Callable[..., tuple[str, dict[str, Any]]]] = {
    "model": stage_model,
    "probe": stage_probe,
    "neurons": stage_neurons,
    "dpo": stage_dpo,
    "generate": stage_generate,
    "score": stage_score,
    "metrics": stage_metrics,
    "key_activations": stage_key_activations,
    "intervention": stage_intervention,
    "retrieval": stage_retrieval,
    "correlation": stage_correlation,
    "encoder": stage_encoder,
    "report": stage_report,
}
