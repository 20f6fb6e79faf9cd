"""``xdetox experiment algorithms | patching | seeds``: studies that go beyond the paper, on a run's stages.

* ``algorithms``: train each preference algorithm on the same English pairs, evaluate all on the
  same prompts (detox_train.compare_algorithms).
* ``patching``: activation patching between the base and the tuned model of the run
  (interp.neurons.patching), with random and whole-layer controls and the relation to the key-activation
  drop and to retrieval.
* ``seeds``: the whole study on the embedded model built from several recipe seeds; each headline
  figure as its mean and range (interp.app.seed_spread).

Both reuse the run's cached stages (model, probe, neurons, dpo, retrieval) and write under
RUN_DIR/experiments/<name>/.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _common(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="demo (default), smoke or paper")
    src.add_argument("--config", default=None, help="YAML run config (see interp/app/presets/*.yaml)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<preset or config name>)")
    p.add_argument("--data-root", default=None, help="data root (flag > $XDETOX_DATA > ../shared/data)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config key, e.g. --set evaluation.n_prompts=10")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    from detox_train.preference import ALGORITHMS, DEFAULT_COMPARISON

    p = sub.add_parser("experiment", help="studies beyond the paper: preference algorithms, activation patching, seed spread")
    esub = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    a = esub.add_parser("algorithms", help="train each preference algorithm on the same pairs; compare transfer")
    _common(a)
    a.add_argument("--algorithms", nargs="+", default=None, choices=list(ALGORITHMS), metavar="NAME",
                   help=f"algorithms to compare (default: {' '.join(DEFAULT_COMPARISON)}); choices: "
                        f"{', '.join(ALGORITHMS)}")
    a.add_argument("--all-algorithms", action="store_true", help="compare every algorithm offered")
    a.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a DPOTrainConfig field for every algorithm, e.g. --train-set max_steps=20")
    a.set_defaults(func=_algorithms)
    q = esub.add_parser("patching", help="how much of each language's toxicity drop flows through the toxic neurons")
    _common(q)
    q.add_argument("--n-prompts", type=int, default=None, help="prompts per language (default: key_activations.n_prompts)")
    q.add_argument("--n-random", type=int, default=1, help="random control sets (same size and layer mix)")
    q.add_argument("--no-layer-control", action="store_true", help="skip the all-neurons-of-those-layers control")
    q.set_defaults(func=_patching)
    sd = esub.add_parser("seeds", help="the study on the embedded model of several recipe seeds: mean and range")
    _common(sd)
    sd.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N",
                    help="recipe seeds (default: 0 1 2); the recipe's own seed is the run itself")
    sd.set_defaults(func=_seeds)


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from interp.core.configio import split_assignments
    from interp.app.pipeline import Pipeline
    from interp.app.run_config import load_run_config

    overrides = split_assignments(args.set)
    if args.data_root:
        overrides["data_root"] = args.data_root
    preset = args.preset if (args.preset or args.config) else "demo"
    cfg = load_run_config(preset=preset if not args.config else None, config=args.config, overrides=overrides)
    name = preset if not args.config else Path(args.config).stem
    return cfg, Pipeline(cfg, Path(args.run_dir or f"runs/{name}"), progress=not args.no_progress)


def _algorithms(args: argparse.Namespace) -> int:
    import yaml

    from detox_train import DPOTrainConfig
    from detox_train.compare_algorithms import compare_algorithms, estimate_seconds
    from detox_train.preference import ALGORITHMS, DEFAULT_COMPARISON
    from interp.core.configio import ConfigError, split_assignments
    from interp.data.languages import LANGUAGES

    cfg, pipe = _setup(args)
    train: dict[str, Any] = {k: yaml.safe_load(v)
                             for k, v in split_assignments(args.train_set, flag="--train-set").items()}
    if "algorithm" in train:
        raise ConfigError("--train-set algorithm=...: the algorithm is what the experiment varies; use --algorithms")
    algos = list(ALGORITHMS) if args.all_algorithms else (args.algorithms or list(DEFAULT_COMPARISON))
    pipe.run(only=["model"])
    c = cfg.dpo
    # sft_weight 0 by default: the SFT anchor is a DPOTrainer loss term only, so keeping the preset's
    # would give sigmoid/ipo/hinge/robust an anchor KTO/ORPO/SimPO lack (and sigmoid would not be plain DPO).
    base = DPOTrainConfig.preset(c.preset, model=pipe.model_path(), seed=cfg.seed, data_root=cfg.data_root,
                                 **{"sft_weight": 0.0, **c.overrides, **train})
    ev = cfg.evaluation
    prompts = [p for ps in pipe.eval_prompts(ev.n_prompts, ev.prompt_split).values() for p in ps]
    out = pipe.run_dir / "experiments" / "algorithms"
    res = compare_algorithms(algos, base, prompts, pipe.scorer(), out, k=ev.k, max_new_tokens=ev.max_new_tokens,
                             temperature=ev.temperature, top_p=ev.top_p, batch_size=ev.batch_size, seed=cfg.seed,
                             n_boot=ev.n_boot, progress=not args.no_progress)
    allrows = res.table[res.table["lang"] == "all"]
    cols = ["algorithm", "emt_reduction", "emt_reduction_lo", "emt_reduction_hi", "toxprob_reduction",
            "distinct_2_change", "heldout_lm_loss_change"]
    print(allrows[cols].to_string(index=False, float_format=lambda x: f"{x:+.3f}"))
    n_ev = ev.n_prompts or 25
    t = res.timings
    kw = dict(n_languages=len(LANGUAGES), n_prompts=n_ev, k=ev.k, measured_k=ev.k)
    print(f"measured: {t['train_s'].sum():.0f}s training + {t['eval_s'].sum():.0f}s evaluation (wall; CPU "
          f"{t['train_cpu_s'].sum():.0f}s + {t['eval_cpu_s'].sum():.0f}s) for {len(algos)} algorithms; linear estimate "
          f"for {len(LANGUAGES)} languages x {n_ev} prompts x k={ev.k}: {estimate_seconds(t, **kw) / 60:.1f} min wall, "
          f"{estimate_seconds(t, column='_cpu', **kw) / 60:.1f} min CPU")
    for unknown, what in (("train_time_unknown", "resumed with no recorded training time"),
                          ("eval_time_unknown", "cached samples with no recorded evaluation time")):
        if unknown in t and t[unknown].any():
            print(f"  (estimate leaves out {', '.join(t.loc[t[unknown], 'algorithm'])}: {what})")
    _refresh_report(pipe)
    print(f"table:  {(out / 'algorithms.csv').resolve()}")
    print(f"figure: {(out / 'algorithms_figure.html').resolve()}")
    return 0


def _patching(args: argparse.Namespace) -> int:
    import pandas as pd

    from interp.core.artifacts import write_csv
    from interp.viz.figures import save_figure
    from interp.neurons.patching import activation_patching

    cfg, pipe = _setup(args)
    pipe.run(only=["model", "probe", "neurons", "dpo", "retrieval"])
    scorer = pipe.scorer()

    def score_fn(texts: list[str], lang: str) -> list[float]:
        return [float("nan") if r.failed else float(r.score) for r in scorer.score(texts, [lang] * len(texts))]

    kc = cfg.key_activations
    n = args.n_prompts or kc.n_prompts
    prompts = {lang: [p.text for p in ps] for lang, ps in pipe.eval_prompts(n, "eval", salt="patching").items()}
    res = activation_patching(pipe.base_model(), pipe.tuned_model(), pipe.group_neurons(), prompts, score_fn,
                              n_new_tokens=kc.n_new_tokens, n_random=args.n_random,
                              layer_control_set=not args.no_layer_control, n_boot=cfg.evaluation.n_boot,
                              seed=cfg.seed, progress=not args.no_progress)
    out = pipe.run_dir / "experiments" / "patching"
    out.mkdir(parents=True, exist_ok=True)
    res.meta["scorer"] = {"id": scorer.id, "version": scorer.version}
    res.to_json(out / "patching.json")
    write_csv(out / "patching_summary.csv", res.summary)
    write_csv(out / "key_drop.csv", res.key_drop)
    retr = pd.read_csv(pipe.output("retrieval", "per_language"))[["lang", "retrieval_acc"]]
    try:
        rel = res.relation(retr, n_boot=cfg.correlation.n_boot, n_perm=cfg.correlation.n_perm, seed=cfg.seed)
    except ValueError as e:  # e.g. fewer than 3 non-English languages with a defined share
        rel = pd.DataFrame([{"warning": str(e)}])
    write_csv(out / "patching_relation.csv", rel)
    save_figure(res.figure(), out / "patching_figure")
    s = res.summary[res.summary["lang"] == "all"]
    print(s[["set", "direction", "n_neurons", "change", "share", "share_lo", "share_hi"]].to_string(
        index=False, float_format=lambda x: f"{x:+.3f}"))
    _refresh_report(pipe)
    print(f"summary: {(out / 'patching_summary.csv').resolve()}")
    return 0


def _seeds(args: argparse.Namespace) -> int:
    import pandas as pd

    from interp.app.cli_common import check_flag
    from interp.app.pipeline import run_pipeline
    from interp.app.seed_spread import run_seed_spread

    for s in args.seeds:
        check_flag("--seeds", s, ge=0)
    cfg, pipe = _setup(args)
    progress = not args.no_progress
    paths = run_seed_spread(cfg, pipe.run_dir, args.seeds,
                            run=lambda c, d: run_pipeline(c, d, progress=progress)[1])
    table = pd.read_csv(paths["spread"])
    print(table[["figure", "n_seeds", "mean", "min", "max"]].to_string(index=False, float_format=lambda x: f"{x:+.3f}"))
    print(f"spread:        {paths['spread'].resolve()}")
    print(f"per language:  {paths['languages'].resolve()}")
    return 0


def _refresh_report(pipe: Any) -> None:
    """Re-render the run's report with the experiment's section when the study's stages are all done."""
    from interp.app.pipeline import STAGES

    if all(pipe.cached(s, pipe.stage_key(s)) is not None for s in STAGES if s != "report"):
        pipe.run(only=["report"], force=["report"])
