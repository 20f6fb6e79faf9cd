"""The paper's figures and tables as plotly figures: each a pure function from tables to ``go.Figure``.

| function | paper | input columns |
|---|---|---|
| :func:`fig_toxicity_before_after` | Fig. 1 | lang, emt_before, emt_after, toxprob_before, toxprob_after |
| :func:`fig_intervention_sweep` | Fig. 2 | offset, lang, mean_toxicity |
| :func:`fig_key_activations` | Fig. 3 | model, lang, mean [, ci_lo, ci_hi] |
| :func:`fig_retrieval_vs_drop` | Fig. 4 | (lang, retrieval_acc) and (lang, emt_reduction_pct) |
| :func:`fig_value_vector_tokens` | Tables 3/4 | rank, layer, neuron, tokens [, langs] |
| :func:`table_language_averages` + :func:`fig_table` | Table 2 | ``<m>_before``/``<m>_after`` per lang |
| :func:`fig_retrieval_heatmap` | — | lang, layer, acc_mean |

:func:`save_figure` always writes self-contained HTML (plotly.js inlined, works offline); PNG/PDF
need kaleido and a Chromium (Debian package ``chromium``) and fail with a clear message otherwise.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.core.artifacts import atomic_path, atomic_write_text
from interp.data.languages import LANGUAGE_NAMES, LANGUAGES
from interp.crosslingual.stats import AGGREGATE_ROWS, drop_aggregate_rows

BEFORE_COLOR, AFTER_COLOR = "#d62728", "#1f77b4"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


#: One-line caption per figure: what to look at (used by the report and the PDF of its figures).
CAPTIONS: dict[str, str] = {
    "fig_toxicity_before_after": "Blue bars (after DPO) below red bars (before) in every language means English DPO "
                                 "transferred; the smallest gaps are the languages it reached least.",
    "fig_value_vector_tokens": "Look for rows whose top tokens mix languages and scripts: one value vector promoting "
                               "toxic tokens of several languages is value-side multilinguality.",
    "fig_key_activations": "Base (red) above 0 in many languages means the toxic keys fire beyond English; blue (DPO) "
                           "below red everywhere means DPO turned them down in every language.",
    "fig_intervention_sweep": "The black mean line should fall as the offset goes negative if the toxic neurons "
                              "cause toxicity across languages.",
    "fig_retrieval_heatmap": "Brighter cells: layers where English and language X sentences retrieve each other; "
                             "middle layers usually align best.",
    "fig_retrieval_vs_drop": "Each dot is a language: retrieval (en, X) against the toxicity outcome named on the "
                             "y axis; the title gives Pearson r, p and n.",
    "fig_table": "Averages over languages before and after DPO (paper Table 2).",
}


class FigureInputError(ValueError):
    """A table handed to a figure function lacks columns or rows."""


class StaticExportUnavailable(RuntimeError):
    """PNG/PDF export needs kaleido and Chromium; HTML export always works."""


def _require(df: pd.DataFrame, columns: Iterable[str], what: str, *, text: Iterable[str] = ()) -> pd.DataFrame:
    """Return ``df`` once it has ``columns`` (numeric where they hold numbers) and the ``text`` columns
    (token strings, which may look like numbers: ``2020``), or raise a :class:`FigureInputError`."""
    if not isinstance(df, pd.DataFrame):
        raise FigureInputError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    columns = list(columns)
    missing = [c for c in [*columns, *text] if c not in df.columns]
    if missing:
        raise FigureInputError(f"{what}: missing column(s) {missing} (columns are {list(df.columns)})")
    for c in columns:  # a metric read as text would be plotted as NaN: refuse it instead
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        num = pd.to_numeric(col, errors="coerce")
        bad = col[num.isna() & col.notna()]
        if len(bad) and (num.notna().any() or str(c).startswith(("emt", "toxprob", "avgtox"))):
            raise FigureInputError(f"{what}: column {c!r} must be numeric, but row {int(bad.index[0]) + 1} holds "
                                   f"{bad.iloc[0]!r}; fix the table (or regenerate it)")
    for c in columns:  # a score outside its range (EMT 7.5) would be plotted as if real
        base = str(c).removesuffix("_before").removesuffix("_after")
        hi = {"emt": 1.0, "avgtox": 1.0, "toxprob": 100.0}.get(base)
        if hi is None:
            continue
        num = pd.to_numeric(df[c], errors="coerce")
        out = num[(num < 0) | (num > hi)]
        if len(out):
            raise FigureInputError(f"{what}: column {c!r} must lie in [0, {hi:g}], but row {int(out.index[0]) + 1} "
                                   f"holds {out.iloc[0]!r}; fix the table (or regenerate it)")
    return df


def _lang_order(langs: Iterable[str]) -> list[str]:
    """Return languages in the paper's order, unknown codes last."""
    langs = list(dict.fromkeys(str(x) for x in langs))
    return sorted(langs, key=lambda x: (LANGUAGES.index(x) if x in LANGUAGES else len(LANGUAGES), x))


def _is_fraction(values: pd.Series) -> bool:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v)) and float(v.abs().max()) <= 1.0


# ----------------------------------------------------------------------------- Fig. 1 and Table 2
def fig_toxicity_before_after(metrics_compare_df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Return Fig. 1: per-language EMT and ToxProb before vs after DPO (grouped bars, two panels).

    Takes :func:`detox_train.evaluate.metrics.compare_tables` output (its ``all`` row is dropped).
    """
    cols = ["lang", "emt_before", "emt_after", "toxprob_before", "toxprob_after"]
    df = drop_aggregate_rows(_require(metrics_compare_df, cols, "fig_toxicity_before_after"))
    if df.empty:
        raise FigureInputError("fig_toxicity_before_after: no language rows")
    df = df.set_index("lang").loc[_lang_order(df["lang"])].reset_index()
    pct = _is_fraction(pd.concat([df["toxprob_before"], df["toxprob_after"]]))
    scale = 100.0 if pct else 1.0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Expected maximum toxicity (EMT)", "Toxicity probability (ToxProb, %)"))
    for row, metric, s in ((1, "emt", 1.0), (2, "toxprob", scale)):
        for when, color in (("before", BEFORE_COLOR), ("after", AFTER_COLOR)):
            fig.add_trace(go.Bar(x=df["lang"], y=df[f"{metric}_{when}"] * s, name=f"{when} DPO",
                                 marker_color=color, legendgroup=when, showlegend=row == 1,
                                 hovertemplate=f"%{{x}} {metric} {when}: %{{y:.3f}}<extra></extra>"),
                          row=row, col=1)
    fig.update_layout(barmode="group", title=title or "Toxicity per language before and after English DPO",
                      height=650, legend=dict(orientation="h", y=1.08))
    return fig


def table_language_averages(metrics_compare_df: pd.DataFrame) -> pd.DataFrame:
    """Return Table 2: for each metric with ``_before``/``_after`` columns, its mean over languages.

    Columns: metric, before, after, change (after - before), change_pct, n_languages. The
    ``all`` row of ``compare_tables`` is ignored and the mean recomputed over language rows.
    """
    df = drop_aggregate_rows(_require(metrics_compare_df, ["lang"], "table_language_averages"))
    metrics = [c[: -len("_before")] for c in df.columns if c.endswith("_before") and f"{c[:-7]}_after" in df.columns]
    if not metrics:
        raise FigureInputError(f"table_language_averages: no <metric>_before/<metric>_after column pairs "
                               f"(columns are {list(df.columns)})")
    if df.empty:
        raise FigureInputError("table_language_averages: no language rows")
    rows = []
    for m in metrics:
        b = pd.to_numeric(df[f"{m}_before"], errors="coerce").mean()
        a = pd.to_numeric(df[f"{m}_after"], errors="coerce").mean()
        rows.append({"metric": m, "before": b, "after": a, "change": a - b,
                     "change_pct": 100.0 * (a - b) / b if b else np.nan, "n_languages": int(len(df))})
    return pd.DataFrame(rows)


def _fmt_cell(v: Any) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return ", ".join(str(x) for x in v)
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "–"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def fig_table(df: pd.DataFrame, *, title: str | None = None, max_rows: int = 500) -> go.Figure:
    """Return ``df`` drawn as a plotly table (numbers to 4 significant digits)."""
    if not isinstance(df, pd.DataFrame):
        raise FigureInputError(f"fig_table: expected a DataFrame, got {type(df).__name__}")
    shown = df.head(max_rows)
    cells = [[_fmt_cell(v) for v in shown[c]] for c in shown.columns]
    fig = go.Figure(go.Table(header=dict(values=[str(c) for c in shown.columns], fill_color="#e8eef7", align="left"),
                             cells=dict(values=cells, align="left")))
    fig.update_layout(title=title, height=min(120 + 28 * (len(shown) + 1), 900), margin=dict(l=10, r=10, t=50, b=10))
    return fig


# ----------------------------------------------------------------------------- Fig. 2 and Fig. 3
def fig_intervention_sweep(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Return Fig. 2: mean toxicity vs activation offset, one line per language plus their mean."""
    df = _require(df, ["offset", "lang", "mean_toxicity"], "fig_intervention_sweep")
    fig = go.Figure()
    if df.empty:
        fig.add_annotation(text="no intervention sweep in this run", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(title=title or "Intervention sweep (not run)")
        return fig
    for lang in _lang_order(df["lang"]):
        d = df[df["lang"] == lang].sort_values("offset")
        fig.add_trace(go.Scatter(x=d["offset"], y=d["mean_toxicity"], mode="lines+markers", name=lang,
                                 line=dict(width=1), marker=dict(size=4), opacity=0.6))
    mean = df.groupby("offset")["mean_toxicity"].mean().sort_index()
    fig.add_trace(go.Scatter(x=mean.index, y=mean.to_numpy(), mode="lines+markers", name="mean over languages",
                             line=dict(width=4, color="black")))
    fig.update_layout(title=title or "Toxicity vs offset added to the toxic neurons' activations",
                      xaxis_title="activation offset", yaxis_title="mean toxicity", height=500)
    return fig


def fig_key_activations(summary: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Return Fig. 3: mean toxic-neuron activation per language, one bar group per model (pre/post)."""
    df = drop_aggregate_rows(_require(summary, ["model", "lang", "mean"], "fig_key_activations"))
    has_ci = "ci_lo" in df.columns and "ci_hi" in df.columns
    order = _lang_order(df["lang"])
    fig = go.Figure()
    palette = [BEFORE_COLOR, AFTER_COLOR, "#2ca02c", "#9467bd"]
    for i, (model, d) in enumerate(df.groupby("model", sort=False)):
        d = d.set_index("lang").reindex(order)
        err = None
        if has_ci:
            err = dict(type="data", symmetric=False, array=(d["ci_hi"] - d["mean"]).to_numpy(),
                       arrayminus=(d["mean"] - d["ci_lo"]).to_numpy())
        fig.add_trace(go.Bar(x=order, y=d["mean"].to_numpy(), name=str(model), error_y=err,
                             marker_color=palette[i % len(palette)]))
    fig.update_layout(barmode="group", title=title or "Mean activation of the toxic neurons per prompt language",
                      yaxis_title="mean activation", height=480)
    return fig


# ----------------------------------------------------------------------------- Fig. 4 and heatmap
def fig_retrieval_vs_drop(per_language_retrieval: pd.DataFrame, drops: pd.DataFrame, *, x: str = "retrieval_acc",
                          y: str | None = None, exclude: Sequence[str] = ("en",),
                          title: str | None = None) -> go.Figure:
    """Return Fig. 4: retrieval (en, X) vs toxicity reduction in X, with the OLS line and Pearson r in the title.

    ``y`` defaults to ``emt_reduction_pct`` (the paper's outcome, positive when toxicity falls),
    else ``emt_change_pct`` when only that is given.
    """
    from scipy import stats as sps

    if y is None:
        y = "emt_reduction_pct" if "emt_reduction_pct" in drops.columns else "emt_change_pct"

    r_df = drop_aggregate_rows(_require(per_language_retrieval, ["lang", x], "fig_retrieval_vs_drop(retrieval)"))
    d_df = drop_aggregate_rows(_require(drops, ["lang", y], "fig_retrieval_vs_drop(drops)"))
    m = r_df[["lang", x]].merge(d_df[["lang", y]], on="lang")
    m = m[~m["lang"].isin(exclude)].dropna()
    if m.empty:
        raise FigureInputError(f"fig_retrieval_vs_drop: no language has both {x} and {y} "
                               f"(retrieval langs {sorted(r_df['lang'])}, drop langs {sorted(d_df['lang'])})")
    fig = go.Figure(go.Scatter(x=m[x], y=m[y], mode="markers+text", text=m["lang"], textposition="top center",
                               marker=dict(size=10, color=AFTER_COLOR), name="languages",
                               hovertext=[LANGUAGE_NAMES.get(lang, lang) for lang in m["lang"]]))
    stat = f"n={len(m)}"
    if len(m) >= 3 and m[x].nunique() > 1 and m[y].nunique() > 1:
        r, p = sps.pearsonr(m[x], m[y])
        slope, icpt = np.polyfit(m[x].to_numpy(float), m[y].to_numpy(float), 1)
        xs = np.linspace(float(m[x].min()), float(m[x].max()), 50)
        fig.add_trace(go.Scatter(x=xs, y=slope * xs + icpt, mode="lines", name="least-squares fit",
                                 line=dict(color="black", dash="dash")))
        stat = f"Pearson r = {r:.3f} (p = {p:.3g}, n = {len(m)})"
    what = "toxicity reduction" if "reduction" in y else "toxicity change"
    fig.update_layout(title=title or f"Bilingual retrieval vs {what} — {stat}",
                      xaxis_title=x.replace("_", " "), yaxis_title=y.replace("_", " "), height=520)
    return fig


def fig_retrieval_heatmap(per_layer: pd.DataFrame, *, value: str = "acc_mean", title: str | None = None) -> go.Figure:
    """Return a language x layer heatmap of retrieval (default: mean of both directions)."""
    df = _require(per_layer, ["lang", "layer", value], "fig_retrieval_heatmap")
    if df.empty:
        raise FigureInputError("fig_retrieval_heatmap: empty per-layer table")
    grid = df.pivot_table(index="lang", columns="layer", values=value, aggfunc="mean")
    grid = grid.loc[_lang_order(grid.index)]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=list(grid.index),
                               colorscale="Viridis", colorbar=dict(title=value),
                               hovertemplate="%{y} layer %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"Bilingual retrieval per layer ({value}; layer 0 = embeddings)",
                      xaxis_title="layer", yaxis_title="language", height=max(300, 40 + 26 * len(grid)))
    return fig


# ----------------------------------------------------------------------------- Tables 3/4
def visible_token(token: str) -> str:
    """Return ``token`` as token tables show it: a piece that starts or ends with whitespace (common
    in subword vocabularies) gets its Python escapes (``\\n``, ``\\t``), so a cell never breaks a line."""
    token = str(token)
    return repr(token)[1:-1] if token.strip() != token or not token else token


def value_token_rows(table: pd.DataFrame, *, k: int | None = None) -> pd.DataFrame:
    """Return one row per value vector (rank, layer, neuron, tokens, langs) from the long vocab table.

    The long form (``interp.neurons.vocab`` ``VocabProjection.table``: layer, neuron, rank, token
    [, languages]) has one row per (vector, token rank); vectors keep their order of appearance
    and their tokens are joined in rank order (top ``k`` when given), each shown by :func:`visible_token`.
    """
    df = _require(table, ["layer", "neuron", "rank"], "value_token_rows", text=["token"])
    rows = []
    for i, ((layer, neuron), d) in enumerate(df.groupby(["layer", "neuron"], sort=False), start=1):
        d = d.sort_values("rank").head(k or len(d))
        langs: list[str] = []
        if "languages" in d.columns:
            for cell in d["languages"].fillna("").astype(str):
                langs += [x for x in cell.split(",") if x and x not in langs]
        rows.append({"rank": i, "layer": int(layer), "neuron": int(neuron),
                     "tokens": ", ".join(visible_token(t) for t in d["token"].fillna("")), "langs": ",".join(langs)})
    return pd.DataFrame(rows, columns=["rank", "layer", "neuron", "tokens", "langs"])


def fig_value_vector_tokens(table: pd.DataFrame, *, k: int | None = None, title: str | None = None) -> go.Figure:
    """Return the value-vector token table (paper Tables 3/4): rank, layer, neuron, top tokens, languages.

    Takes either one row per vector (rank, layer, neuron, tokens [, langs]) or the long vocab
    table (layer, neuron, rank, token, ...; see :func:`value_token_rows`).
    """
    if isinstance(table, pd.DataFrame) and "tokens" not in table.columns and "token" in table.columns:
        table = value_token_rows(table, k=k)
    df = _require(table, ["rank", "layer", "neuron"], "fig_value_vector_tokens", text=["tokens"])
    cols = ["rank", "layer", "neuron", "tokens"] + (["langs"] if "langs" in df.columns else [])
    return fig_table(df[cols].sort_values("rank"), title=title or "Top tokens promoted by the toxic value vectors")


# ----------------------------------------------------------------------------- export
def find_chromium() -> str | None:
    """Return the path of a Chromium/Chrome executable (``$BROWSER_PATH`` first), or None."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file():
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def static_export_problem() -> str | None:
    """Return why PNG/PDF export cannot work here (None when kaleido and Chromium are present)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return ("static PNG/PDF export needs kaleido: pip install 'xdetox[figures]' (or pip install kaleido); "
                "HTML export works without it")
    if find_chromium() is None:
        return ("static PNG/PDF export needs Chromium: apt-get install chromium (Debian/Ubuntu) or set "
                "BROWSER_PATH to a Chrome/Chromium binary; HTML export works without it")
    return None


def figure_html(fig: go.Figure, *, include_plotlyjs: bool = True, div_id: str | None = None) -> str:
    """Return ``fig`` as HTML; with ``include_plotlyjs`` a full offline page (plotly.js inlined, no CDN)."""
    return fig.to_html(full_html=include_plotlyjs, include_plotlyjs=include_plotlyjs, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def save_figure(fig: go.Figure, path_without_ext: str | os.PathLike[str],
                formats: Sequence[str] = ("html",)) -> list[Path]:
    """Write ``fig`` as ``<path>.<fmt>`` for each format (html, png, pdf, svg) and return the paths.

    HTML is self-contained (plotly.js inlined). Static formats raise
    :class:`StaticExportUnavailable` naming what to install when kaleido or Chromium is missing;
    the HTML (if requested) is written first either way.
    """
    base = Path(path_without_ext)
    unknown = [f for f in formats if f not in ("html", "png", "pdf", "svg")]
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}; use html, png, pdf or svg")
    out: list[Path] = []
    if "html" in formats:
        out.append(atomic_write_text(base.with_suffix(".html"), figure_html(fig, div_id=base.name)))
    static = [f for f in formats if f != "html"]
    if static:
        _use_system_chromium()
        targets = [base.with_suffix(f".{fmt}") for fmt in static]
        tmps = [t.with_name(f".{t.name}.tmp") for t in targets]
        base.parent.mkdir(parents=True, exist_ok=True)
        import plotly.io as pio

        try:
            pio.write_images([fig] * len(static), tmps, format=static)  # one browser session for every format
            for tmp, target in zip(tmps, targets):
                os.replace(tmp, target)
                out.append(target)
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
    return out


def _use_system_chromium() -> str:
    """Point kaleido at the system Chromium (no download) and return its path; raise if unavailable."""
    problem = static_export_problem()
    if problem:
        raise StaticExportUnavailable(problem)
    chromium = find_chromium()
    assert chromium is not None
    if not os.environ.get("BROWSER_PATH"):
        os.environ["BROWSER_PATH"] = chromium  # kaleido's browser finder reads this
    return chromium


def save_figures_pdf(figures: Sequence[tuple[str, go.Figure]], path: str | os.PathLike[str], *,
                     title: str = "xdetox figures") -> Path:
    """Write every ``(caption, figure)`` into one PDF at ``path`` (one figure per page, caption under it).

    Each figure is exported as SVG by kaleido (one browser session), the SVGs are laid out in
    a plain page and headless Chromium prints it to PDF. Needs kaleido and Chromium.
    """
    import base64
    import html as htmlmod
    import subprocess
    import tempfile

    import plotly.io as pio

    if not figures:
        raise FigureInputError("save_figures_pdf: no figures to write")
    chromium = _use_system_chromium()
    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="xdetox-pdf-") as tmp:
        svgs = [Path(tmp) / f"fig{i}.svg" for i in range(len(figures))]
        pio.write_images([f for _, f in figures], svgs, format="svg", width=1000, height=620)
        pages = []
        for i, ((caption, _), svg) in enumerate(zip(figures, svgs), start=1):
            data = base64.b64encode(svg.read_bytes()).decode("ascii")
            pages.append(f'<section><img src="data:image/svg+xml;base64,{data}"><p>'
                         f"{htmlmod.escape(caption)}</p></section>")
        page = Path(tmp) / "figures.html"
        from interp.viz.report import FONT_STACK

        page.write_text(
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{htmlmod.escape(title)}</title><style>'
            f"@page{{size:A4 landscape;margin:12mm}} body{{font-family:{FONT_STACK};margin:0}}"
            "section{page-break-after:always;text-align:center} img{width:100%;max-height:160mm;object-fit:contain}"
            "p{font-size:13px;color:#333}</style></head><body>" + "".join(pages) + "</body></html>", encoding="utf-8")
        with atomic_path(target) as out:
            res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-background-networking", f"--user-data-dir={Path(tmp) / 'profile'}",
                                  "--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri()],
                                 capture_output=True, text=True, timeout=300)
            if res.returncode != 0 or not Path(out).stat().st_size:
                raise StaticExportUnavailable(f"Chromium could not print {target}: {res.stderr.strip()[-500:]}")
    return target


__all__ = ["fig_toxicity_before_after", "fig_intervention_sweep", "fig_key_activations", "fig_retrieval_vs_drop",
           "fig_value_vector_tokens", "value_token_rows", "visible_token", "table_language_averages", "fig_table", "fig_retrieval_heatmap",
           "save_figure", "figure_html", "find_chromium", "static_export_problem", "FigureInputError",
           "StaticExportUnavailable", "AGGREGATE_ROWS", "CAPTIONS", "save_figures_pdf"]
