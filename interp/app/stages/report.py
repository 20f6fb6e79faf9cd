"""The run report: report.html and summary.json from the stage outputs."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_report(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.app.pipeline_report import build_report

    if not pipe.selected("model"):  # an encoder-only run (preset encoder-analysis)
        from interp.app.pipeline_report import write_encoder_report

        html, summary = write_encoder_report(pipe)
        return (f"report at {html}", {"report": pipe.rel(html), "summary": pipe.rel(summary)})
    html, summary = build_report(pipe, d)
    return (f"report at {html}", {"report": pipe.rel(html), "summary": pipe.rel(summary)})
