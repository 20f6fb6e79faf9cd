"""The suite runs in a sandbox: HOME and every cache root are temporary, and leaks fail the run."""
from __future__ import annotations

import os
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
    assert conftest.isolation_leaks() == []


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
