"""Shared fixtures: tiny models of each family, the real data root, an isolated cache."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models are overhead-bound: one thread is faster and keeps results bit-identical across
# the in-process runs and the subprocesses the tests start (they inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
# "--model default" means the seconds-long smoke preset in tests (the real one trains ~15 min).
os.environ.setdefault("XDETOX_DEFAULT_PRESET", "smoke")

from tiny_models import FAMILIES, make_tokenizer, save_tiny  # noqa: E402


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real offline data (../shared/data or $XDETOX_DATA)."""
    from interp.paths import data_root as resolve

    return resolve()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """save_pretrained directories of a tiny model per family."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {f: save_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One uninterrupted run of the smoke preset, shared by the pipeline and notebook tests."""
    from interp.pipeline import run_pipeline
    from interp.run_config import load_run_config

    run_dir = tmp_path_factory.mktemp("smoke_run")
    run_pipeline(load_run_config(preset="smoke"), run_dir, progress=False)
    return run_dir
