"""The encoder analysis on real pretrained weights (multilingual-e5-small)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_encoder(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    """The encoder analysis on real pretrained weights (multilingual-e5-small), when enabled."""
    if not pipe.config.encoder.enabled:
        return "encoder analysis disabled (encoder.enabled: false)", {}
    from interp.app.encoder_analysis import run_encoder_analysis

    return run_encoder_analysis(pipe, d, log=pipe.log)
