"""``xdetox dpo train | merge``: a thin shell over :func:`detox_train.train_dpo` and :func:`merge_adapter`.

Also runnable as ``python -m interp.app.cli_dpo train ...`` so that ``accelerate launch -m
interp.app.cli_dpo train ...`` starts one training process per device.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml


def _config_from_args(args: argparse.Namespace) -> Any:
    from detox_train.config import DPOTrainConfig
    from interp.core.configio import given_config_flags, parse_value, split_assignments

    overrides: dict[str, Any] = given_config_flags(args)
    overrides.update({k: parse_value(k, v) for k, v in split_assignments(args.set).items()})
    if args.config:
        return DPOTrainConfig.from_yaml(args.config, **overrides)
    return DPOTrainConfig.preset(args.preset, **overrides)


def _run_train(args: argparse.Namespace) -> int:
    from detox_train.dpo import train_dpo

    cfg = _config_from_args(args)
    from pathlib import Path

    from interp.app.cli_common import check_out_dir

    check_out_dir(cfg.output_dir, "--output-dir")
    if cfg.pplm_path and cfg.pairs != "pplm":
        raise ValueError(f"--pplm-path {cfg.pplm_path} is set but pairs is {cfg.pairs!r}, so the file would be ignored; add "
                         "--pairs pplm to train on it, or drop --pplm-path")
    if cfg.pairs == "pplm" and cfg.pplm_path and not Path(cfg.pplm_path).is_file():
        raise FileNotFoundError(f"--pplm-path {cfg.pplm_path}: no such file")
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    out = train_dpo(cfg, resume=args.resume)
    print(out)
    return 0


def _run_merge(args: argparse.Namespace) -> int:
    from detox_train.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    print(out)
    return 0


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Add the ``dpo train`` flags: preset/config file, one flag per DPOTrainConfig field, --set, --resume."""
    from detox_train.config import DPOTrainConfig, preset_names
    from interp.core.configio import add_config_flags

    p.add_argument("--preset", default="paper-full", choices=preset_names(),
                   help="named configuration to start from (detox_train/presets/NAME.yaml; default: %(default)s)")
    p.add_argument("--config", default=None,
                   help="YAML file with DPOTrainConfig keys (a 'preset: NAME' key starts from that preset)")
    fields = p.add_argument_group("DPOTrainConfig fields (given flags override the preset or config file; "
                                  "the defaults shown are the dataclass's, a preset may set others)")
    add_config_flags(fields, DPOTrainConfig)  # type: ignore[arg-type]
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set lora_r=16 --set early_stopping_patience=null")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last complete checkpoint in the output directory")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (the Trainer's and datasets')")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``xdetox dpo train|merge``."""
    p = sub.add_parser("dpo", help="DPO / LoRA / QLoRA preference tuning (TRL) and adapter merging")
    dsub = p.add_subparsers(dest="dpo_command", required=True, metavar="ACTION")
    t = dsub.add_parser("train", help="train with DPO; writes the model or adapter, manifest.json and "
                                      "training_log.json to --output-dir (works under accelerate launch)")
    add_train_args(t)
    t.set_defaults(func=_run_train)
    m = dsub.add_parser("merge", help="merge a LoRA/QLoRA adapter into a full-precision copy of its base")
    m.add_argument("adapter", help="adapter directory written by `xdetox dpo train`")
    m.add_argument("--out", required=True, help="directory for the merged model")
    m.add_argument("--base", default=None, help="base model (default: the adapter's base_model_name_or_path)")
    m.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="precision of the merge")
    m.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    m.add_argument("--debug", action="store_true", help="show tracebacks")
    m.set_defaults(func=_run_merge)


def main(argv: list[str] | None = None) -> int:
    """Run ``dpo train|merge`` directly (entry point for ``accelerate launch -m interp.app.cli_dpo``)."""
    from interp.core.quiet import quiet_libraries

    quiet_libraries()
    parser = argparse.ArgumentParser(prog="interp.app.cli_dpo")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "dpo":
        argv = ["dpo", *argv]
    args = parser.parse_args(argv)
    if getattr(args, "no_progress", False):
        quiet_libraries(progress=False)
    from interp.app.boundary import run_command

    return run_command(args.func, args, prog="interp.app.cli_dpo")


if __name__ == "__main__":
    sys.exit(main())
