"""Third-party output that tells a user nothing, silenced through each library's own controls.

Only the CLI entry points call this (a notebook keeps its libraries' defaults); the Trainer's
metric printing is switched off in ``detox_train.dpo`` for every caller, since the metrics go to
``training_log.json``. Our own warnings stay.
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
    # Only that module is quieted: its CUDA-library warnings elsewhere matter on a GPU.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    if progress:
        return
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


__all__ = ["quiet_libraries", "NOISY_PACKAGES"]
