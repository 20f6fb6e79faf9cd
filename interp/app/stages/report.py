"""The run report: report.html and summary.json built from the run directory."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_report(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    """Write report.html and summary.json from the run directory (read through :class:`RunHandle`)."""
    from interp.app.run_handle import RunHandle
    from interp.app.run_report import build_report

    html, summary = build_report(RunHandle(pipe))
    return (f"report at {html}", {"report": pipe.rel(html), "summary": pipe.rel(summary)})
