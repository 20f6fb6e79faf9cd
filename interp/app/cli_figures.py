"""``xdetox figures NAME``: draw a paper figure from a run directory or from table files (a thin shell
over :mod:`interp.viz.figures`)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class FigureSpec:
    """A named figure: its function and the run-dir tables it reads, as (stage, output, default file)."""

    help: str
    inputs: tuple[tuple[str, str, str], ...]
    draw: Callable[..., object]

    @property
    def caption(self) -> str:
        """The figure's one-line caption (``interp.viz.figures.CAPTIONS``), else its help text."""
        from interp.viz.figures import CAPTIONS

        return CAPTIONS.get(getattr(self.draw, "__name__", ""), self.help)


def _specs() -> dict[str, FigureSpec]:
    from interp.viz import figures as F

    compare = ("metrics", "compare", "metrics_compare.csv")
    return {
        "toxicity": FigureSpec("Fig. 1: per-language EMT/ToxProb before vs after", (compare,), F.fig_toxicity_before_after),
        "sweep": FigureSpec("Fig. 2: toxicity vs neuron activation offset", (("intervention", "sweep", "sweep.csv"),),
                            F.fig_intervention_sweep),
        "key-activations": FigureSpec("Fig. 3: toxic-neuron activations per language, pre vs post DPO",
                                      (("key_activations", "summary", "key_activations.csv"),), F.fig_key_activations),
        "retrieval-vs-drop": FigureSpec("Fig. 4: retrieval (en, X) vs %EMT change, with r",
                                        (("retrieval", "per_language", "retrieval.csv"), compare), F.fig_retrieval_vs_drop),
        "retrieval-heatmap": FigureSpec("retrieval accuracy per language and layer",
                                        (("retrieval", "per_layer", "retrieval_per_layer.csv"),), F.fig_retrieval_heatmap),
        "value-tokens": FigureSpec("Tables 3/4: top tokens of the toxic value vectors",
                                   (("neurons", "vocab_table", "vocab_table.csv"),), F.fig_value_vector_tokens),
        "table2": FigureSpec("Table 2: averages over languages before/after", (compare,),
                             lambda df: F.fig_table(F.table_language_averages(df), title="Averages over languages")),
    }


FIGURE_NAMES = ("toxicity", "sweep", "key-activations", "retrieval-vs-drop", "retrieval-heatmap", "value-tokens", "table2")


def read_table(path: str | Path) -> pd.DataFrame:
    """Return a table from CSV, JSONL or JSON (a list of records, or ``{"rows": [...]}``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: table file not found")
    if p.suffix == ".csv":
        import io

        from interp.core.artifacts import read_text

        text = read_text(p, what="CSV table")
        if not text.strip():
            raise ValueError(f"{p}: the table is empty; pass a table written by `xdetox run` or `xdetox eval metrics`")
        try:
            return pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise ValueError(f"{p}: unreadable CSV ({' '.join(str(e).split())})") from None
    if p.suffix == ".jsonl":
        from interp.core.artifacts import read_jsonl

        return pd.DataFrame(list(read_jsonl(p)))
    if p.suffix == ".json":
        from interp.core.artifacts import read_json

        obj = read_json(p)
        rows = obj.get("rows") if isinstance(obj, dict) else obj
        if not isinstance(rows, list):
            raise ValueError(f"{p}: expected a JSON list of records or an object with a 'rows' list")
        return pd.DataFrame(rows)
    raise ValueError(f"{p}: unsupported table format {p.suffix!r}; use .csv, .jsonl or .json")


def run_dir_table(run_dir: Path, stage: str, output: str, default_file: str) -> Path:
    """Return the path of a stage output in a ``xdetox run`` directory (stage.json first, then the default name)."""
    stage_dir = run_dir / "stages" / stage
    marker = stage_dir / "stage.json"
    if marker.is_file():
        from interp.core.artifacts import read_json

        data = read_json(marker)
        if not isinstance(data, dict) or not isinstance(data.get("outputs", {}), dict):
            raise ValueError(f"{marker}: not a stage record (expected a JSON object with 'outputs'); delete it "
                             f"and rerun the stage (xdetox run --run-dir {run_dir} --only {stage})")
        rel = (data.get("outputs") or {}).get(output)
        if rel and (run_dir / rel).is_file():
            return run_dir / rel
    if (stage_dir / default_file).is_file():
        return stage_dir / default_file
    raise FileNotFoundError(f"{run_dir}: stage {stage!r} has no output {output!r} ({stage_dir / default_file}); "
                            f"run it first (xdetox run --run-dir {run_dir} --only {stage}) or pass --table FILE")


def _cmd(args: argparse.Namespace) -> int:
    from interp.viz.figures import StaticExportUnavailable, save_figure, save_figures_pdf

    specs = _specs()
    names = list(FIGURE_NAMES) if args.name == "all" else [args.name]
    if args.table and len(names) > 1:
        raise ValueError("--table goes with one figure NAME, not 'all'")
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is None and not args.table:
        raise ValueError("give --run-dir DIR (an `xdetox run` directory) or --table FILE for each input")
    if run_dir is not None and not run_dir.is_dir():
        raise FileNotFoundError(f"--run-dir {run_dir}: no such run directory (made by `xdetox run --run-dir DIR`)")
    out_dir = Path(args.out_dir) if args.out_dir else (run_dir / "figures" if run_dir else Path("."))
    rc = 0
    drawn: list[tuple[str, object]] = []
    for name in names:
        spec = specs[name]
        if args.table:
            if len(args.table) != len(spec.inputs):
                wanted = ", ".join(f"{s}/{o}" for s, o, _ in spec.inputs)
                raise ValueError(f"figure {name!r} takes {len(spec.inputs)} table(s) ({wanted}); got {len(args.table)}")
            paths = [Path(t) for t in args.table]
        else:
            try:
                paths = [run_dir_table(run_dir, *i) for i in spec.inputs]
            except FileNotFoundError as e:
                if args.name != "all":
                    raise
                print(f"skip {name}: {e}", file=sys.stderr)
                continue
        tables = [read_table(p) for p in paths]
        try:
            fig = spec.draw(*tables)
        except ValueError as e:
            raise ValueError(f"{', '.join(map(str, paths))}: {e}") from None
        except KeyError as e:  # a table without the columns this figure reads
            raise ValueError(f"{', '.join(map(str, paths))}: missing column {e.args[0]!r} that figure {name!r} "
                             f"reads; pass the {'/'.join(s + ' ' + o for s, o, _ in spec.inputs)} table") from None
        drawn.append((f"{spec.help}. {spec.caption}", fig))
        formats = args.format or ([] if args.single_pdf else ["html"])
        if not formats:
            continue  # only the combined PDF was asked for
        try:
            written = save_figure(fig, out_dir / name.replace("-", "_"), formats=tuple(formats))
        except StaticExportUnavailable as e:
            print(f"xdetox figures: {e}", file=sys.stderr)
            rc = 1
            continue
        for w in written:
            print(w)
    if not drawn and rc == 0:
        raise ValueError(f"{run_dir}: no tables for any figure (no finished stages); run the study first "
                         f"(xdetox run --run-dir {run_dir})")
    if args.single_pdf and drawn:
        try:
            print(save_figures_pdf(drawn, Path(args.single_pdf)))
        except StaticExportUnavailable as e:
            print(f"xdetox figures: {e}", file=sys.stderr)
            rc = 1
    return rc


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``xdetox figures NAME``."""
    listing = "; ".join(f"{n}: {s.help}" for n, s in _specs().items())
    p = sub.add_parser("figures", help="draw a paper figure (plotly HTML; PNG/PDF with kaleido + Chromium)",
                       description=f"Figures: {listing}; all: every figure the run has tables for.")
    p.add_argument("name", choices=[*FIGURE_NAMES, "all"], metavar="NAME",
                   help=f"one of {', '.join(FIGURE_NAMES)}, or all")
    p.add_argument("--run-dir", default=None, help="an `xdetox run` directory; tables are read from its stages/")
    p.add_argument("--table", action="append", default=None, metavar="FILE",
                   help="input table (.csv/.jsonl/.json) instead of --run-dir; repeat in input order "
                        "(retrieval-vs-drop: retrieval per-language table, then metrics compare table)")
    p.add_argument("--out-dir", default=None, help="where to write (default: RUN_DIR/figures or .)")
    p.add_argument("--format", nargs="+", default=None, choices=["html", "png", "pdf", "svg"],
                   help="output formats (default html, which always works offline; png/pdf/svg need kaleido and "
                        "the system Chromium, no download)")
    p.add_argument("--single-pdf", default=None, metavar="FILE.pdf",
                   help="also write every drawn figure into this one PDF, one per page with its caption "
                        "(with NAME all: the report's figures)")
    p.set_defaults(func=_cmd)
