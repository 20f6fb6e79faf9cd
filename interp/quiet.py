"""Third-party output that tells a user nothing, silenced through each library's own controls.

Only the CLI calls this (a notebook keeps its libraries' defaults). Our own warnings stay.
"""
from __future__ import annotations

import logging
import warnings

#: Libraries whose FutureWarnings are deprecation notes for their own internals (e.g. TRL calling
#: transformers' renamed ``gradient_checkpointing``), not advice for a user of xdetox.
NOISY_PACKAGES = ("transformers", "trl", "peft", "accelerate", "datasets")


def quiet_libraries(*, progress: bool = True) -> None:
    """Silence library deprecation notes and optional-kernel chatter; with ``progress=False`` also
    every library progress bar (model loading, dataset maps, the Trainer's bar)."""
    for pkg in NOISY_PACKAGES:
        warnings.filterwarnings("ignore", category=FutureWarning, module=rf"{pkg}(\.|$)")
    # bitsandbytes logs at import that the optional `kernels` CPU gemm is missing; the fallback works.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if progress:
        return
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


__all__ = ["quiet_libraries", "NOISY_PACKAGES"]
