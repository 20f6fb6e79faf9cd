"""``xdetox probe train | eval | show | import``: a thin shell over the ``probes`` library."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from interp.app.cli_common import add_command, add_languages_arg, check_flag, check_out_dir, load_model_from_args


def _layer(value: str) -> int | None:
    if value.lower() in ("none", "final"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer must be an integer block index or 'final', got {value!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``probe`` command group."""
    from probes.features import POOLINGS
    from probes.probe import SOLVERS
    from probes.train import DATASETS

    p = sub.add_parser("probe", help="English toxicity probe on the residual stream: train, eval, show, import")
    psub = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")

    t = add_command(psub, "train", "extract (cached) features, fit the probe, write it with its metrics",
                    model=True, data=True)
    t.add_argument("--dataset", choices=DATASETS, default="paradetox", help="English labelled data (default paradetox)")
    t.add_argument("--jigsaw-path", default=None, help="Kaggle Jigsaw train.csv (for --dataset jigsaw)")
    t.add_argument("--jigsaw-test-path", default=None,
                   help="Kaggle Jigsaw test.csv (labels from test_labels.csv next to it) as the test set; "
                        "then the whole train file trains")
    t.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out share of the data when no test file is given (paper: 0.1)")
    t.add_argument("--out", required=True, help="output directory for the probe")
    t.add_argument("--solver", choices=SOLVERS, default="paper", help="paper: torch BCE/Adam (Table 7); logreg: sklearn")
    t.add_argument("--layer", type=_layer, default=None,
                   help="residual after block L; default 'final' = final layer after the final norm")
    t.add_argument("--pooling", choices=POOLINGS, default="mean", help="sentence pooling over non-pad tokens")
    t.add_argument("--max-examples", type=int, default=None, help="cap on texts (whole paraphrase groups kept)")
    t.add_argument("--seed", type=int, default=99, help="split/init/shuffle seed (paper: 99)")
    t.add_argument("--batch-size", type=int, default=32, help="feature-extraction batch size")
    t.add_argument("--random-init-baseline", action="store_true",
                   help="also train the probe on a freshly initialised copy of the model")
    t.set_defaults(func=cmd_train)

    e = add_command(psub, "eval", "transfer report: the probe scored on RTP-LX per language (AUC vs human ratings)",
                    model=True, data=True)
    e.add_argument("--probe", required=True, help="probe directory (or .safetensors) from `xdetox probe train`")
    add_languages_arg(e)
    e.add_argument("--split", choices=("eval", "train", "all"), default="all", help="RTP-LX hold-out split to use")
    e.add_argument("--max-prompts", type=int, default=None, help="prompts per language (seeded sample)")
    e.add_argument("--toxic-threshold", type=float, default=3.0, help="rating >= this counts as toxic")
    e.add_argument("--clean-threshold", type=float, default=1.34, help="rating <= this counts as clean")
    e.add_argument("--out", default=None, help="write the table as CSV here")
    e.add_argument("--no-strict", action="store_true", help="only warn when the model fingerprint differs")
    e.set_defaults(func=cmd_eval)

    s = psub.add_parser("show", help="print a saved probe's metadata and metrics")
    s.add_argument("--probe", required=True, help="probe directory (or .safetensors)")
    s.set_defaults(func=cmd_show)

    i = psub.add_parser("import", help="convert the paper's english-probe.pt (pickled nn.Linear) safely")
    i.add_argument("--pt", required=True, help="path to english-probe.pt")
    i.add_argument("--out", required=True, help="output probe directory")
    i.set_defaults(func=cmd_import)


def _fmt(m: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "nan" if isinstance(v, float) and math.isnan(v) else (f"{v:.4f}" if isinstance(v, float) else str(v))

    return " ".join(f"{k}={f(m[k])}" for k in ("accuracy", "roc_auc", "f1", "n") if k in m)


def cmd_train(args: argparse.Namespace) -> int:
    from interp.core.artifacts import write_json
    from probes.train import load_jigsaw_test, load_probe_data, train_probe

    check_flag("--max-examples", args.max_examples, ge=2)
    check_flag("--batch-size", args.batch_size, ge=1)
    check_out_dir(args.out)
    if args.dataset == "jigsaw" and not args.jigsaw_path:
        raise ValueError("--dataset jigsaw needs --jigsaw-path FILE (the Kaggle Jigsaw train.csv)")
    if args.jigsaw_path and not Path(args.jigsaw_path).is_file():
        raise FileNotFoundError(f"--jigsaw-path {args.jigsaw_path}: no such file")
    from interp.core.paths import data_root

    data_root(args.data_root)
    model = load_model_from_args(args)
    records = load_probe_data(args.dataset, data_root=args.data_root, jigsaw_path=args.jigsaw_path)
    test = load_jigsaw_test(args.jigsaw_test_path) if args.jigsaw_test_path else None
    probe, metrics = train_probe(model, records, test=test,
                                 solver=args.solver, layer=args.layer, pooling=args.pooling,
                                 max_examples=args.max_examples, seed=args.seed,
                                 random_init_baseline=args.random_init_baseline, batch_size=args.batch_size,
                                 test_fraction=args.test_fraction)
    out = Path(args.out)
    probe.save(out)
    write_json(out / "metrics.json", metrics)
    print(f"probe ({metrics['feature']}, {args.solver}) on {metrics['dataset']}: "
          f"{metrics['n_train']} train / {metrics['n_test']} test texts")
    for split in ("train", "val", "test"):
        if split in metrics:
            print(f"  {split:5s} {_fmt(metrics[split])}")
    if "random_init" in metrics:
        print(f"  random-init model test {_fmt(metrics['random_init']['test'])}")
    print(f"wrote {out}")
    return 0


def _sample(prompts: list[Any], n: int | None, seed: int = 0) -> list[Any]:
    if n is None:
        return prompts
    by_lang: dict[str, list[Any]] = {}
    for p in prompts:
        by_lang.setdefault(p.lang, []).append(p)
    key = lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest()  # noqa: E731
    return [p for ps in by_lang.values() for p in sorted(ps, key=key)[:n]]


def cmd_eval(args: argparse.Namespace) -> int:
    from interp.data import rtplx
    from interp.data import split as split_mod
    from probes.probe import ToxicityProbe
    from probes.transfer import transfer_report

    check_flag("--max-prompts", args.max_prompts, ge=1)
    if args.toxic_threshold <= args.clean_threshold:
        raise ValueError(f"--toxic-threshold ({args.toxic_threshold:g}) must be above --clean-threshold "
                         f"({args.clean_threshold:g})")
    from interp.data.languages import normalize_languages

    normalize_languages(args.languages, where="--languages")
    ToxicityProbe.load(args.probe)  # a missing or damaged probe is reported before the model loads
    model = load_model_from_args(args)
    probe = ToxicityProbe.load(args.probe, model, strict=not args.no_strict)
    prompts = rtplx.load_rtplx(args.data_root, args.languages)
    if args.split != "all":
        prompts = split_mod.rtplx_split(prompts, args.split, root=args.data_root)
    prompts = _sample(prompts, args.max_prompts)
    table = transfer_report(model, probe, prompts, toxic_threshold=args.toxic_threshold,
                            clean_threshold=args.clean_threshold, check=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from interp.core.artifacts import make_manifest, write_csv
        from interp.model.loading import model_id

        write_csv(args.out, table, manifest=make_manifest(
            kind="probe-transfer", model_id=model_id(model), inputs={"probe": args.probe, "languages": args.languages},
            config={"split": args.split, "max_prompts": args.max_prompts, "toxic_threshold": args.toxic_threshold,
                    "clean_threshold": args.clean_threshold}))
        print(f"wrote {args.out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from probes.probe import ToxicityProbe

    probe = ToxicityProbe.load(args.probe)
    meta = probe.metadata()
    print(f"{probe!r}")
    for key in ("model_id", "fingerprint", "feature", "layer", "pooling", "d_model", "classes", "solver",
                "imported", "source", "best_epoch"):
        if key in meta:
            print(f"  {key}: {meta[key]}")
    if "data" in meta:
        print(f"  data: {json.dumps(meta['data'])}")
    for split, m in (meta.get("metrics") or {}).items():
        if split == "random_init":
            print(f"  random-init test: {_fmt(m.get('test', {}))}")
        elif isinstance(m, dict):
            print(f"  {split}: {_fmt(m)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from probes.importer import import_reference_probe

    probe = import_reference_probe(args.pt)
    print(f"imported {probe!r}; wrote {probe.save(Path(args.out))}")
    return 0
