"""``xdetox run``: the whole study as named, cached, resumable stages."""
from __future__ import annotations

import argparse

#: The run config of ``xdetox run`` without --preset or --config.
PRESET = "demo"


def register(sub: argparse._SubParsersAction) -> None:
    from interp.app.pipeline import STAGES

    p = sub.add_parser("run", help="run the whole study (model, probe, neurons, DPO, evaluation, analysis, report)",
                       description="Run the study's stages in order: " + ", ".join(STAGES) + ". Finished stages "
                                   "are cached under RUN_DIR/stages and skipped on rerun; interrupted ones resume.")
    from interp.core.configio import add_config_flags
    from interp.app.run_config import ModelStageConfig, RunConfig, preset_names

    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help=f"shipped run config: {', '.join(preset_names())} "
                                                    f"(interp/app/presets/NAME.yaml; default: {PRESET})")
    src.add_argument("--config", default=None, help="YAML config file (see interp/app/presets/*.yaml)")
    p.add_argument("--run-dir", default=None, help="output directory (default runs/<preset or config name>)")
    fields = p.add_argument_group("config fields (given flags override model.name, model.adapter and data_root "
                                  "of the preset or config file; the defaults shown are the dataclass's)")
    add_config_flags(fields, ModelStageConfig, fields=["name", "adapter"], flags={"name": "--model"})  # type: ignore
    add_config_flags(fields, RunConfig, fields=["data_root"])  # type: ignore[arg-type]
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set evaluation.n_prompts=50 --set evaluation.scorer=lexicon")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE", help="rerun from this stage on")
    p.add_argument("--only", action="append", default=[], metavar="STAGE", help="run only this stage (repeatable)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun this stage even if cached")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from interp.core.configio import given_config_flags, split_assignments
    from interp.app.pipeline import run_pipeline
    from interp.app.run_config import load_run_config

    overrides: dict[str, object] = split_assignments(args.set)
    given = given_config_flags(args)
    for dest, key in (("model", "model.name"), ("adapter", "model.adapter"), ("data_root", "data_root")):
        if dest in given:
            overrides[key] = given[dest]
    preset = args.preset if (args.preset or args.config) else PRESET
    cfg = load_run_config(preset=preset if not args.config else None, config=args.config, overrides=overrides)
    name = preset if not args.config else Path(args.config).stem
    run_dir = Path(args.run_dir or f"runs/{name}")
    _quiet_library_bars()
    report, summary = run_pipeline(cfg, run_dir, only=args.only, from_stage=args.from_stage, force=args.force,
                                   progress=not args.no_progress)
    if report.is_file():
        print(final_block(report, summary), end="")
    return 0


def _quiet_library_bars() -> None:
    """Hide the bars of library bookkeeping (weight loading, shard writing, dataset maps): each long
    stage keeps one bar for its own work units (the DPO trainer's steps included)."""
    import datasets
    from transformers.utils import logging as hf_logging

    def hook(factory, args, kwargs):  # type: ignore[no-untyped-def]
        if str(kwargs.get("desc", "")).startswith(("Loading weights", "Writing model shards")):
            kwargs = {**kwargs, "disable": True}
        return factory(*args, **kwargs)

    hf_logging.set_tqdm_hook(hook)
    datasets.disable_progress_bars()


def final_block(report: "Path", summary: "Path") -> str:
    """Return the closing block of ``xdetox run``: one line per verdict, then the paths of the outputs."""
    import json
    from pathlib import Path

    data = json.loads(Path(summary).read_text(encoding="utf-8")) if Path(summary).is_file() else {}
    lines = ["", "verdicts (the paper's claims on this run):"]
    for v in data.get("verdicts", []):
        lines.append(f"  {v['claim']:<5} {v['verdict']:<13} {v['statement']}")
        lines.append(f"        this run: {v['this_run']}")
        lines.append(f"        decided by: {v['test']}")
    if not data.get("verdicts"):
        lines.append("  (none: the summary has no verdicts)")
    lines += [f"report:  {Path(report).resolve()}", f"summary: {Path(summary).resolve()}"]
    figures = Path(report).parent / "figures"
    lines.append(f"figures: xdetox figures all --run-dir {Path(report).parent} --format png "
                 f"(or --single-pdf {figures / 'figures.pdf'})")
    return "\n".join(lines) + "\n"
