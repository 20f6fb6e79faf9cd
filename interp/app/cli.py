"""The ``xdetox`` command: a thin shell; each command group registers itself from its module.

``interp.app`` is the app layer: the only place allowed to import ``probes`` and ``detox_train``
(import-linter contracts in pyproject.toml, checked by tests/test_layering.py).
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType

from interp.app import (
    cli_data,
    cli_dpo,
    cli_eval,
    cli_experiment,
    cli_figures,
    cli_model,
    cli_neurons,
    cli_probes,
    cli_run,
)
from interp.app.boundary import run_command

# Each module defines ``register(subparsers)``; the order is the order of ``xdetox --help``.
COMMAND_MODULES: tuple[ModuleType, ...] = (
    cli_data,        # xdetox data check
    cli_model,       # xdetox model build-default | quality
    cli_probes,      # xdetox probe train | eval | show
    cli_neurons,     # xdetox neurons find | project | activations | intervene
    cli_dpo,         # xdetox dpo train | merge
    cli_eval,        # xdetox eval generate | score | metrics
    cli_figures,     # xdetox figures NAME
    cli_run,         # xdetox run
    cli_experiment,  # xdetox experiment algorithms | patching
)


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser (every group registered)."""
    parser = argparse.ArgumentParser(prog="xdetox", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit 2 (see :func:`run_command`)."""
    from interp.core.quiet import quiet_libraries

    quiet_libraries()  # before the command modules import transformers/bitsandbytes
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_progress", False):
        quiet_libraries(progress=False)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
