"""Arguments shared by every CLI subcommand (model choice, data root, output), defined once."""
from __future__ import annotations

import argparse
from typing import Any


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add --model/--adapter/--dtype/--device/--bos from the run config's fields (help and defaults written
    there once); ``--model default`` is the embedded offline model."""
    from interp.core.configio import add_config_flags
    from interp.app.run_config import ModelStageConfig, RunConfig

    add_config_flags(p, ModelStageConfig, fields=["name", "adapter", "dtype", "device"], flags={"name": "--model"})
    add_config_flags(p, RunConfig, fields=["bos"])


def add_data_root_arg(p: argparse.ArgumentParser) -> None:
    """Add --data-root (flag > $XDETOX_DATA > ../shared/data), from ``RunConfig.data_root``."""
    from interp.core.configio import add_config_flags
    from interp.app.run_config import RunConfig

    add_config_flags(p, RunConfig, fields=["data_root"])


def load_model_from_args(args: argparse.Namespace) -> Any:
    """Return the bridge named by --model/--adapter/--dtype/--device, carrying the --bos policy."""
    from interp.model.loading import load_model
    from interp.model.tokenization import set_bos_policy

    model = load_model(args.model, adapter=args.adapter, dtype=args.dtype, device=args.device)
    return set_bos_policy(model, getattr(args, "bos", None) or "auto")


def add_command(sub: argparse._SubParsersAction, name: str, help: str, *, model: bool = False,
                data: bool = False) -> argparse.ArgumentParser:
    """Return a new subcommand parser, with the model flags and/or --data-root when it needs them."""
    p = sub.add_parser(name, help=help)
    if model:
        add_model_args(p)
    if data:
        add_data_root_arg(p)
    return p


def add_languages_arg(p: argparse.ArgumentParser, *, what: str = "language codes") -> None:
    """Add --languages (any code scheme; normalised later with ``interp.data.languages``)."""
    p.add_argument("--languages", nargs="+", default=None, help=f"{what} (default: all 17)")


def check_flag(flag: str, value: Any, *, ge: float | None = None, gt: float | None = None,
               le: float | None = None) -> None:
    """Raise an error naming ``flag`` unless ``value`` (None = unset, accepted) is within the bounds."""
    from interp.core.artifacts import InputError

    if value is None:
        return
    if (ge is not None and value < ge) or (gt is not None and value <= gt) or (le is not None and value > le):
        bounds = " and ".join(b for b in (f">= {ge:g}" if ge is not None else "", f"> {gt:g}" if gt is not None
                                          else "", f"<= {le:g}" if le is not None else "") if b)
        raise InputError(f"{flag} must be {bounds}, got {value!r}")


def check_out_dir(path: Any, flag: str = "--out") -> None:
    """Raise an error naming ``flag`` when ``path`` exists but is not a directory."""
    from pathlib import Path

    from interp.core.artifacts import InputError

    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise InputError(f"{flag} {path} is a file, not a directory; give a directory path")


def check_out_file(path: Any, flag: str = "--out") -> None:
    """Raise an error naming ``flag`` when ``path`` is an existing directory (a file is expected)."""
    from pathlib import Path

    from interp.core.artifacts import InputError

    if path is not None and Path(path).is_dir():
        raise InputError(f"{flag} {path} is a directory; give a file path")
