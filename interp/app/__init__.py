"""The app layer: every CLI, the pipeline and its stages, run config and presets, the run report.

The only layer that ties interp, probes and detox_train together; nothing imports it.
``interp.app.open_run(run_dir)`` opens a finished run as typed objects (imported lazily, so the CLI
does not pay for it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.app.run_handle import RunHandle, open_run

__all__ = ["open_run", "RunHandle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from interp.app import run_handle

        return getattr(run_handle, name)
    raise AttributeError(f"module 'interp.app' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
