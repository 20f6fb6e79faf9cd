"""The app layer: every CLI, the pipeline and its stages, run config and presets, the run report.

The only layer that ties interp, probes and detox_train together; nothing imports it.
``interp.app.open_run(run_dir)`` opens a finished run as typed objects (imported lazily, so the CLI
does not pay for it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.app.pipeline import open_run
    from interp.app.run_handle import RunHandle

__all__ = ["open_run", "RunHandle"]


def __getattr__(name: str) -> Any:
    if name == "open_run":
        from interp.app.pipeline import open_run

        return open_run
    if name == "RunHandle":
        from interp.app.run_handle import RunHandle

        return RunHandle
    raise AttributeError(f"module 'interp.app' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
