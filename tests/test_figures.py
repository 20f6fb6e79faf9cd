"""interp.viz.figures: each figure is a pure function of its tables; values checked against the inputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats as sps

from interp.viz import figures as F

LANGS = ["en", "ar", "cs", "de", "ja", "zh", "hi"]


def synthetic_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """Tables shaped like the other stages' outputs (used by the report tests too)."""
    rng = np.random.default_rng(seed)
    before = pd.DataFrame({"lang": LANGS, "emt": rng.uniform(.4, .6, 7), "toxprob": rng.uniform(.3, .6, 7)})
    after = pd.DataFrame({"lang": LANGS, "emt": rng.uniform(.1, .3, 7), "toxprob": rng.uniform(0, .2, 7)})
    cmp = before.merge(after, on="lang", suffixes=("_before", "_after"))
    for m in ("emt", "toxprob"):
        cmp[f"{m}_change"] = cmp[f"{m}_after"] - cmp[f"{m}_before"]
        cmp[f"{m}_change_pct"] = 100 * cmp[f"{m}_change"] / cmp[f"{m}_before"]
    mean = cmp.drop(columns="lang").mean()
    cmp = pd.concat([cmp, pd.DataFrame([{"lang": "all", **mean.to_dict()}])], ignore_index=True)
    others = [lang for lang in LANGS if lang != "en"]
    return {
        "compare": cmp,
        "retrieval": pd.DataFrame({"lang": others, "retrieval_acc": rng.uniform(.2, .9, 6)}),
        "per_layer": pd.DataFrame([{"lang": lang, "layer": k, "acc_mean": rng.uniform(), "mean_paired_cosine": rng.uniform()}
                                   for lang in others for k in range(4)]),
        "sweep": pd.DataFrame([{"offset": o, "lang": lang, "mean_toxicity": .12 + .02 * o + rng.uniform(0, .01)}
                               for o in range(-5, 1) for lang in LANGS]),
        "keys": pd.DataFrame([{"model": m, "lang": lang, "mean": rng.normal(.05 if m == "base" else 0, .02),
                               "ci_lo": -0.01, "ci_hi": 0.12} for m in ("base", "dpo") for lang in LANGS]),
        "tokens": pd.DataFrame({"rank": [2, 1], "layer": [13, 14], "neuron": [7176, 5723],
                                "tokens": [["femenino", "weib"], ["sex", "porn", "сексу"]], "langs": ["es,de", "en,ru"]}),
    }


def test_fig1_values_and_aggregate_row_dropped() -> None:
    t = synthetic_tables()
    fig = F.fig_toxicity_before_after(t["compare"])
    assert isinstance(fig, go.Figure) and len(fig.data) == 4
    emt_before = fig.data[0]
    assert "all" not in list(emt_before.x) and list(emt_before.x)[0] == "ar"  # paper order, en 4th
    cmp = t["compare"].set_index("lang")
    assert dict(zip(emt_before.x, emt_before.y)) == pytest.approx(cmp["emt_before"].drop("all").to_dict())
    tox_after = fig.data[3]
    assert dict(zip(tox_after.x, tox_after.y))["ja"] == pytest.approx(100 * cmp.loc["ja", "toxprob_after"])


def test_table2_matches_compare_tables_macro_row() -> None:
    from detox_train.evaluate.metrics import COMPARED, compare_tables

    rng = np.random.default_rng(1)
    mk = lambda lo, hi: pd.DataFrame({"lang": LANGS, **{c: rng.uniform(lo, hi, 7) for c in COMPARED}})  # noqa: E731
    cmp = compare_tables(mk(.4, .6), mk(.1, .3))
    tab = F.table_language_averages(cmp).set_index("metric")
    allrow = cmp.set_index("lang").loc["all"]
    for m in ("emt", "toxprob"):
        assert tab.loc[m, "before"] == pytest.approx(allrow[f"{m}_before"])
        assert tab.loc[m, "after"] == pytest.approx(allrow[f"{m}_after"])
        assert tab.loc[m, "change"] == pytest.approx(allrow[f"{m}_change"])
    assert (tab["n_languages"] == 7).all()
    assert isinstance(F.fig_table(tab.reset_index()), go.Figure)


def test_fig2_sweep_mean_line_and_empty_sweep() -> None:
    t = synthetic_tables()
    fig = F.fig_intervention_sweep(t["sweep"])
    mean = fig.data[-1]
    assert mean.name == "mean over languages" and len(fig.data) == len(LANGS) + 1
    assert list(mean.y) == pytest.approx(t["sweep"].groupby("offset")["mean_toxicity"].mean().to_list())
    empty = F.fig_intervention_sweep(pd.DataFrame(columns=["offset", "lang", "mean_toxicity"]))
    assert "not run" in empty.layout.title.text


def test_fig3_key_activations_error_bars() -> None:
    t = synthetic_tables()
    fig = F.fig_key_activations(t["keys"])
    assert [tr.name for tr in fig.data] == ["base", "dpo"]
    k = t["keys"].set_index(["model", "lang"])
    i = list(fig.data[0].x).index("de")
    assert fig.data[0].y[i] == pytest.approx(k.loc[("base", "de"), "mean"])
    assert fig.data[0].error_y.array[i] == pytest.approx(0.12 - k.loc[("base", "de"), "mean"])


def test_fig4_regression_line_and_r_in_title() -> None:
    t = synthetic_tables()
    fig = F.fig_retrieval_vs_drop(t["retrieval"], t["compare"])
    m = t["retrieval"].merge(t["compare"], on="lang")
    r = sps.pearsonr(m["retrieval_acc"], m["emt_change_pct"]).statistic
    assert f"Pearson r = {r:.3f}" in fig.layout.title.text and "n = 6" in fig.layout.title.text
    fit = sps.linregress(m["retrieval_acc"], m["emt_change_pct"])
    line = fig.data[1]
    assert np.allclose(line.y, fit.slope * np.asarray(line.x) + fit.intercept)
    assert "en" not in list(fig.data[0].text)


def test_heatmap_grid_and_token_table() -> None:
    t = synthetic_tables()
    fig = F.fig_retrieval_heatmap(t["per_layer"])
    z = np.asarray(fig.data[0].z)
    assert z.shape == (6, 4) and list(fig.data[0].y) == ["ar", "cs", "de", "hi", "ja", "zh"]
    pl = t["per_layer"].set_index(["lang", "layer"])["acc_mean"]
    assert z[list(fig.data[0].y).index("ja"), 2] == pytest.approx(pl[("ja", 2)])
    tok = F.fig_value_vector_tokens(t["tokens"])
    cells = tok.data[0].cells.values
    assert list(cells[0]) == ["1", "2"] and cells[3][0] == "sex, porn, сексу"


def test_token_table_from_long_vocab_table() -> None:
    long = pd.DataFrame({"layer": [14, 14, 14, 13, 13], "neuron": [5723] * 3 + [7176] * 2, "rank": [2, 1, 3, 1, 2],
                         "token": ["porn", "sex", "seks", "femenino", "weib"],
                         "languages": ["en", "en,fr", "pl", "es", "de"]})
    rows = F.value_token_rows(long, k=2)
    assert rows.to_dict("records") == [
        {"rank": 1, "layer": 14, "neuron": 5723, "tokens": "sex, porn", "langs": "en,fr"},
        {"rank": 2, "layer": 13, "neuron": 7176, "tokens": "femenino, weib", "langs": "es,de"}]
    cells = F.fig_value_vector_tokens(long).data[0].cells.values
    assert cells[3][0] == "sex, porn, seks"


def test_token_rows_escape_whitespace_pieces() -> None:
    long = pd.DataFrame({"layer": [0, 0, 0, 0], "neuron": [1, 1, 1, 1], "rank": [1, 2, 3, 4],
                         "token": ["\n", " hell", "ok", "2020"]})  # a number-like piece is still a token
    assert F.value_token_rows(long)["tokens"].tolist() == ["\\n,  hell, ok, 2020"]
    assert F.fig_value_vector_tokens(long).data[0].cells.values[3][0] == "\\n,  hell, ok, 2020"


def test_missing_columns_named() -> None:
    t = synthetic_tables()
    with pytest.raises(F.FigureInputError, match=r"missing column\(s\) \['toxprob_after'\]"):
        F.fig_toxicity_before_after(t["compare"].drop(columns=["toxprob_after"]))
    with pytest.raises(F.FigureInputError, match="no language has both"):
        F.fig_retrieval_vs_drop(t["retrieval"].assign(lang="sv"), t["compare"])


def test_save_figure_html_offline_and_static_message(tmp_path, monkeypatch) -> None:
    fig = F.fig_key_activations(synthetic_tables()["keys"])
    [html] = F.save_figure(fig, tmp_path / "fig3")
    text = html.read_text(encoding="utf-8")
    assert html.name == "fig3.html" and "plotly.js v" in text
    assert not re.search(r"<script[^>]+src=", text)  # no CDN
    monkeypatch.setattr(F, "static_export_problem", lambda: "static PNG/PDF export needs Chromium: apt-get install chromium")
    (tmp_path / "fig3.html").unlink()
    with pytest.raises(F.StaticExportUnavailable, match="apt-get install chromium"):
        F.save_figure(fig, tmp_path / "fig3", formats=("html", "png"))
    assert (tmp_path / "fig3.html").is_file()  # HTML still written
    with pytest.raises(ValueError, match="unknown figure format"):
        F.save_figure(fig, tmp_path / "x", formats=("gif",))


def test_static_export_problem_names_what_is_missing(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_kaleido(name, *a, **k):
        if name == "kaleido":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_kaleido)
    assert "pip install" in F.static_export_problem() and "kaleido" in F.static_export_problem()


def _figures_cli(argv: list[str]) -> int:
    import argparse

    from interp.app.cli_figures import register

    parser = argparse.ArgumentParser(prog="xdetox")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_from_run_dir_and_table_files(tmp_path, capsys) -> None:
    t = synthetic_tables()
    run = tmp_path / "run"
    files = {("metrics", "metrics_compare.csv"): t["compare"], ("retrieval", "retrieval.csv"): t["retrieval"],
             ("retrieval", "retrieval_per_layer.csv"): t["per_layer"], ("key_activations", "key_activations.csv"): t["keys"]}
    for (stage, name), df in files.items():
        (run / "stages" / stage).mkdir(parents=True, exist_ok=True)
        df.to_csv(run / "stages" / stage / name, index=False)
    assert _figures_cli(["figures", "all", "--run-dir", str(run)]) == 0
    made = sorted(p.name for p in (run / "figures").iterdir())
    assert made == ["key_activations.html", "retrieval_heatmap.html", "retrieval_vs_drop.html", "table2.html",
                    "toxicity.html"]
    assert "skip sweep" in capsys.readouterr().err
    # From explicit table files (JSONL and CSV), in input order.
    jl = tmp_path / "ret.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in t["retrieval"].to_dict("records")))
    assert _figures_cli(["figures", "retrieval-vs-drop", "--table", str(jl), "--table",
                         str(run / "stages/metrics/metrics_compare.csv"), "--out-dir", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "retrieval_vs_drop.html").is_file()
    with pytest.raises(ValueError, match=r"takes 2 table\(s\)"):
        _figures_cli(["figures", "retrieval-vs-drop", "--table", str(jl)])
    with pytest.raises(FileNotFoundError, match="stage 'intervention' has no output 'sweep'"):
        _figures_cli(["figures", "sweep", "--run-dir", str(run)])


@pytest.mark.skipif(F.static_export_problem() is not None,
                    reason=f"static export unavailable here: {F.static_export_problem()}")
def test_static_png_export_with_kaleido_and_chromium(tmp_path) -> None:
    fig = F.fig_key_activations(synthetic_tables()["keys"])
    paths = F.save_figure(fig, tmp_path / "fig3", formats=("png",))
    assert [p.name for p in paths] == ["fig3.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 5000


needs_static = pytest.mark.skipif(F.static_export_problem() is not None,
                                  reason=f"static export unavailable here: {F.static_export_problem()}")


def _kaleido_downloads() -> list:
    """Browsers kaleido/choreographer downloaded into their package (we never want one)."""
    import choreographer

    return sorted(Path(choreographer.__file__).parent.glob("cli/browser_exe*"))


@needs_static
def test_figures_cli_static_formats_and_one_pdf_on_a_run(smoke_run: Path, tmp_path) -> None:
    """`xdetox figures NAME --format png pdf svg` and `figures all --single-pdf` on a finished run, with the
    system Chromium (no download)."""
    import subprocess
    import sys

    before = _kaleido_downloads()
    out = tmp_path / "figs"
    cmd = [sys.executable, "-m", "interp.app.cli", "figures"]
    res = subprocess.run([*cmd, "value-tokens", "--run-dir", str(smoke_run), "--out-dir", str(out),
                          "--format", "png", "pdf", "svg"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["value_tokens.pdf", "value_tokens.png", "value_tokens.svg"]
    assert res.stdout.split() == [str(out / n) for n in ("value_tokens.png", "value_tokens.pdf", "value_tokens.svg")]
    assert (out / "value_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "value_tokens.pdf").read_bytes()[:5] == b"%PDF-" and b"<svg" in (out / "value_tokens.svg").read_bytes()
    book = tmp_path / "all_figures.pdf"
    res = subprocess.run([*cmd, "all", "--run-dir", str(smoke_run), "--out-dir", str(tmp_path / "none"),
                          "--single-pdf", str(book)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == [str(book)] and not (tmp_path / "none").exists()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", book.read_bytes()))
    from interp.app.cli_figures import FIGURE_NAMES

    assert pages == len(FIGURE_NAMES), pages  # one page per figure the run has tables for
    assert _kaleido_downloads() == before


def _tofu_in_static_export(tmp_path: Path) -> list[str]:
    """Return the scripts whose tick label renders pixel for pixel like as many missing-glyph boxes."""
    import plotly.io as pio
    from test_report import SCRIPT_SAMPLES, TOFU, _png_pixels

    F._use_system_chromium()
    figs, files = [], []
    for name, text in SCRIPT_SAMPLES.items():
        for kind, label in (("glyphs", text), ("tofu", TOFU * len(text))):
            fig = go.Figure(go.Bar(x=[label], y=[1]))
            fig.update_layout(width=240, height=120, margin=dict(l=5, r=5, t=5, b=40), xaxis_tickfont_size=24)
            figs.append(fig)
            files.append(tmp_path / f"{name}_{kind}.png")
    for _ in range(2):  # one kaleido (Chromium) session for all; a cold Chromium start can write nothing
        pio.write_images(figs, files, format="png")
        if all(f.is_file() for f in files):
            break
    missing = [f.name for f in files if not f.is_file()]
    assert not missing, f"kaleido wrote no file for {missing} (twice)"
    return [n for n in SCRIPT_SAMPLES
            if np.array_equal(_png_pixels(tmp_path / f"{n}_glyphs.png"), _png_pixels(tmp_path / f"{n}_tofu.png"))]


@needs_static
def test_static_export_renders_every_script(tmp_path) -> None:
    assert _tofu_in_static_export(tmp_path) == []


@needs_static
def test_static_export_font_check_trips_without_the_fonts(tmp_path, monkeypatch) -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu")
    if not dejavu.is_dir():
        pytest.skip("fonts-dejavu-core not installed")
    conf = tmp_path / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?><fontconfig><dir>{dejavu}</dir><cachedir>{tmp_path / "c"}</cachedir>'
                    "</fontconfig>", encoding="utf-8")
    monkeypatch.setenv("FONTCONFIG_FILE", str(conf))  # kaleido's Chromium inherits it
    assert {"Devanagari", "Han", "Hangul", "Kana"} <= set(_tofu_in_static_export(tmp_path))
