"""The suite runs in a sandbox: HOME and every cache root are temporary, and leaks fail the run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import conftest


def test_home_and_caches_point_into_the_session_sandbox() -> None:
    from interp.core.paths import cache_dir

    sandbox = conftest.SANDBOX.resolve()
    assert Path.home().resolve() == conftest.HOME.resolve()
    for var in ("XDETOX_CACHE", "HF_HOME", "XDG_CACHE_HOME", "TORCH_HOME"):
        assert Path(os.environ[var]).resolve().is_relative_to(sandbox), var
    assert cache_dir().resolve().is_relative_to(sandbox)


def test_a_write_into_home_is_reported() -> None:
    probe = conftest.HOME / ".cache" / "xdetox" / "leak"
    probe.parent.mkdir(parents=True)
    probe.write_text("x")
    try:
        assert "~/.cache/xdetox/leak" in conftest.isolation_leaks()
    finally:
        probe.unlink()
        probe.parent.rmdir()
        probe.parent.parent.rmdir()
    assert conftest.isolation_leaks(checkout=False) == []


def test_a_new_file_in_the_checkout_is_reported() -> None:
    stray = conftest.ROOT / "runs-leak-probe"
    stray.write_text("x")
    try:
        assert any(s.endswith("runs-leak-probe") for s in conftest.isolation_leaks())
    finally:
        stray.unlink()


def test_a_new_file_in_an_existing_folder_is_reported() -> None:
    stray = conftest.ROOT / "notebooks" / "leak-probe.txt"
    stray.write_text("x")
    try:
        assert any(s.endswith("notebooks/leak-probe.txt") for s in conftest.isolation_leaks())
    finally:
        stray.unlink()


def test_a_home_leak_in_an_xdist_worker_fails_the_run(tmp_path) -> None:
    """`make test` runs under pytest-xdist: a worker's own exit status does not reach the run's, so the
    worker reports its HOME leaks to the controller, which fails the run."""
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("conftest.py", "tiny_models.py"):
        shutil.copy(Path(conftest.__file__).with_name(name), suite / name)
    (suite / "test_leaky.py").write_text(
        "from pathlib import Path\n\n\ndef test_writes_home():\n    (Path.home() / 'leaked.txt').write_text('x')\n\n\n"
        "def test_clean():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(conftest.ROOT)}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", str(suite)]
    leaky = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert leaky.returncode == 1, leaky.stdout + leaky.stderr
    assert "2 passed" in leaky.stdout and "~/leaked.txt" in leaky.stderr
    (suite / "test_leaky.py").write_text("def test_clean():\n    pass\n")
    clean = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
