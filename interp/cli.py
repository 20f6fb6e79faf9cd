"""The ``xdetox`` command: a thin shell; each command group registers itself from its module.

This module and the ``cli_*``/``pipeline`` modules are the app layer: the only places in
``interp`` allowed to import ``probes`` and ``detox_train``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, description). Each module defines ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "interp.cli_data",       # xdetox data check
    "interp.cli_model",      # xdetox model build-default | quality
    "probes.cli",            # xdetox probe train | eval | show
    "interp.cli_neurons",    # xdetox neurons find | project | activations | intervene
    "detox_train.cli_dpo",   # xdetox dpo train | merge
    "detox_train.cli_eval",  # xdetox eval generate | score | metrics
    "interp.cli_figures",    # xdetox figures NAME
    "interp.cli_run",        # xdetox run
    "interp.cli_experiment",  # xdetox experiment algorithms | patching
)


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser (every group registered)."""
    parser = argparse.ArgumentParser(prog="xdetox", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit 2."""
    from interp.quiet import quiet_libraries

    quiet_libraries()  # before the command modules import transformers/bitsandbytes
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_progress", False):
        quiet_libraries(progress=False)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"xdetox: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
