"""The CLI boundary tells a missing package (user error) from a broken project import (bug)."""
from __future__ import annotations

import argparse

from interp.app.boundary import BUG_REPORT, run_command


def _raise(exc: BaseException):
    def func(args: argparse.Namespace) -> int:
        raise exc
    return func


def test_missing_third_party_module_is_a_user_error(capsys) -> None:
    rc = run_command(_raise(ModuleNotFoundError("No module named 'vllm'", name="vllm")), argparse.Namespace())
    err = capsys.readouterr().err
    assert rc == 2 and "pip install vllm" in err and "Traceback" not in err


def test_broken_project_import_is_a_bug_report(capsys) -> None:
    for exc in (ModuleNotFoundError("No module named 'interp.gone'", name="interp.gone"),
                ImportError("cannot import name 'x' from 'detox_train.merge'", name="detox_train.merge"),
                ModuleNotFoundError("No module named 'probes.x'", name="probes.x")):
        rc = run_command(_raise(exc), argparse.Namespace())
        err = capsys.readouterr().err
        assert rc == 1, err
        assert "Traceback" in err and "pip install" not in err
        assert BUG_REPORT.splitlines()[0][:30] in err


def test_manifest_argv_redacts_secret_values_only(monkeypatch) -> None:
    """`--set key_activations.n_prompts=3` is kept; secret flag values and secret-named settings are not."""
    import sys

    from interp.core.artifacts import make_manifest

    sentinel = "SENTINEL-9f3a"
    monkeypatch.setattr(sys, "argv", ["xdetox", "run", "--set", "key_activations.n_prompts=3", "--api-key", sentinel,
                                      f"--token={sentinel}", "--set", f"evaluation.scorer_options.api_key={sentinel}",
                                      "--set", f"x.password={sentinel}", "--keyfile-free"])
    argv = make_manifest(kind="t")["argv"]
    assert "key_activations.n_prompts=3" in argv and "--keyfile-free" in argv and "--api-key" in argv
    assert sentinel not in " ".join(argv)
    assert "evaluation.scorer_options.api_key=<redacted>" in argv
