"""Shared fixtures: tiny models of each family, the real data root, an isolated cache."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# The suite writes nothing outside its own temporary directories. Before any library is imported
# (huggingface_hub reads HF_HOME at import), HOME and every cache root point into one session
# sandbox; HOME itself must still be empty when the session ends (checked in pytest_sessionfinish).
ROOT = Path(__file__).resolve().parents[1]
SANDBOX = Path(tempfile.mkdtemp(prefix="xdetox-tests-"))
HOME = SANDBOX / "home"
HOME.mkdir()


def _checkout_entries() -> set[str]:
    """What a test could leave in the checkout: git's view of changed and untracked files, ignored
    folders (collapsed), and every file under runs/ (ignored, so git shows it as one folder)."""
    import subprocess

    def git(*args: str) -> list[str]:
        res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return res.stdout.splitlines() if res.returncode == 0 else [p.name for p in ROOT.iterdir()]

    names = set(git("status", "--porcelain", "-uall"))
    names |= set(git("ls-files", "--others", "--ignored", "--exclude-standard", "--directory"))
    runs = ROOT / "runs"
    if runs.is_dir():
        names |= {str(p.relative_to(ROOT)) for p in runs.rglob("*")}
    return {n for n in names if "__pycache__" not in n and not n.endswith(".pyc")}


_CHECKOUT_BEFORE = _checkout_entries()
for var, sub in {"XDETOX_CACHE": "xdetox-cache", "HF_HOME": "hf", "XDG_CACHE_HOME": "xdg-cache",
                 "XDG_CONFIG_HOME": "xdg-config", "XDG_DATA_HOME": "xdg-data", "TORCH_HOME": "torch",
                 "MPLCONFIGDIR": "mpl", "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
                 "JUPYTER_DATA_DIR": "jupyter-data", "IPYTHONDIR": "ipython"}.items():
    os.environ[var] = str(SANDBOX / sub)
os.environ["HOME"] = str(HOME)
# These take precedence over HF_HOME (clusters often set them): unset, so nothing reaches a real cache.
for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE", "TRANSFORMERS_CACHE",
            "HF_ASSETS_CACHE", "HF_MODULES_CACHE"):
    os.environ.pop(var, None)
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
    from interp.core.paths import data_root as resolve

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
    from interp.app.pipeline import run_pipeline
    from interp.app.run_config import load_run_config

    run_dir = tmp_path_factory.mktemp("smoke_run")
    run_pipeline(load_run_config(preset="smoke"), run_dir, progress=False)
    return run_dir


def isolation_leaks(*, checkout: bool = True) -> list[str]:
    """Return what the session wrote into HOME or (``checkout``) left in the checkout (both must stay as they were)."""
    leaked = sorted(f"~/{p.relative_to(HOME)}" for p in HOME.rglob("*"))
    if checkout:
        leaked += sorted(f"{ROOT}: {n}" for n in _checkout_entries() - _CHECKOUT_BEFORE)
    return leaked


_WORKER_LEAKS: list[str] = []  # HOME leaks the pytest-xdist workers reported (controller only)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: collect the HOME leaks a finished worker reported."""
    _WORKER_LEAKS.extend(getattr(node, "workeroutput", {}).get("home_leaks", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test wrote into HOME or left files (e.g. runs/) in the checkout.

    Under pytest-xdist each worker has its own sandbox and HOME: a worker reports its HOME leaks
    to the controller (a worker's own exit status does not reach the run's), and only the
    controller checks the checkout, once every worker is down.
    """
    worker = hasattr(session.config, "workerinput")
    leaked = isolation_leaks(checkout=not worker)
    if worker:
        session.config.workeroutput["home_leaks"] = leaked
    else:
        leaked = _WORKER_LEAKS + leaked
    if leaked:
        print(f"\nisolation: the suite wrote outside its temporary directories: {leaked[:20]}", file=sys.stderr)
        if not worker:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        shutil.rmtree(SANDBOX, ignore_errors=True)
