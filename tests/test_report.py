"""interp.viz.report: self-contained report.html + summary.json, the prompt-text guard, and a real render
in headless Chromium (screenshot non-blank, plots in the DOM, no JS errors)."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interp.viz import figures as F
from interp.viz.report import PromptTextLeakError, ReportSection, assert_no_prompt_text, render_report, write_report
from test_figures import synthetic_tables

MANIFEST = {"kind": "run", "model_id": "tiny-gpt2", "seed": 0, "versions": {"plotly": "x"}}
SCORER = {"name": "lexicon-scorer", "version": "0.1", "languages": ["en", "de"]}
SUMMARY = {"pearson_r_retrieval_emt": 0.61, "n_languages": 6}
PROMPTS = {"rtplx:de:17": "Diese Aussage über Menschen & <Gruppen> ist völlig", "rtplx:ja:3": "彼らはいつも同じことを言っているけれども本当は"}


def _sections() -> list[ReportSection]:
    t = synthetic_tables()
    return [
        ReportSection("Toxicity before and after DPO", [F.fig_toxicity_before_after(t["compare"]),
                                                        F.table_language_averages(t["compare"])]),
        ReportSection("Intervention sweep", [F.fig_intervention_sweep(t["sweep"])]),
        ReportSection("Key activations", [F.fig_key_activations(t["keys"])], note="pre vs post DPO"),
        ReportSection("Retrieval", [F.fig_retrieval_vs_drop(t["retrieval"], t["compare"]),
                                    F.fig_retrieval_heatmap(t["per_layer"])]),
        ReportSection("Value vectors", [F.fig_value_vector_tokens(t["tokens"]), "Tokens are subword pieces."]),
    ]


N_FIGS = 6


def test_report_self_contained(tmp_path) -> None:
    html_path, json_path = write_report(tmp_path, sections=_sections(), manifest=MANIFEST, scorer_identity=SCORER,
                                        summary=SUMMARY, forbidden_texts=PROMPTS)
    page = html_path.read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1  # the bundle, inlined exactly once
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link[^>]+href=", page)  # no external requests
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count('class="plotly-graph-div"') == N_FIGS
    assert "lexicon-scorer" in page and "tiny-gpt2" in page and "Tokens are subword pieces." in page
    assert json.loads(json_path.read_text()) == SUMMARY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "summary.json"]  # no temp files
    # Same inputs, same page (no random div ids).
    again = render_report(_sections(), manifest=MANIFEST, scorer_identity=SCORER, summary=SUMMARY,
                          summary_link="summary.json")
    assert again == page
    # The summary is the file beside the report, linked, not inlined.
    assert 'href="summary.json"' in page and '"pearson_r_retrieval_emt"' not in page
    inlined = render_report(_sections(), manifest=MANIFEST, scorer_identity=SCORER, summary=SUMMARY)
    assert '&quot;pearson_r_retrieval_emt&quot;' in inlined and 'href="summary.json"' not in inlined


def test_dict_sections_and_bad_items() -> None:
    t = synthetic_tables()
    page = render_report({"Retrieval": F.fig_retrieval_heatmap(t["per_layer"]), "Table": t["retrieval"]},
                         manifest={}, scorer_identity={})
    assert page.count('class="plotly-graph-div"') == 1 and "<table" in page
    with pytest.raises(TypeError, match="cannot render a int"):
        render_report({"x": [3]}, manifest={}, scorer_identity={})


@pytest.mark.parametrize("where", ["table", "figure_title", "truncated_label", "summary"])
def test_prompt_text_guard_trips(tmp_path, where: str) -> None:
    t = synthetic_tables()
    text = PROMPTS["rtplx:de:17"]
    summary = dict(SUMMARY)
    sections = _sections()[:1]
    if where == "table":
        sections.append(ReportSection("Leaky table", [pd.DataFrame({"id": ["rtplx:de:17"], "prompt": [text]})]))
    elif where == "figure_title":
        sections.append(ReportSection("Leaky figure", [F.fig_retrieval_heatmap(t["per_layer"], title=text)]))
    elif where == "truncated_label":
        fig = F.fig_key_activations(t["keys"])
        fig.data[0].x = [text[:30] + "…"] + list(fig.data[0].x[1:])
        sections.append(ReportSection("Leaky label", [fig]))
    else:
        summary["example"] = text
    with pytest.raises(PromptTextLeakError, match=r"1 RTP-LX prompt\(s\) \(rtplx:de:17\)") as e:
        write_report(tmp_path, sections=sections, manifest=MANIFEST, scorer_identity=SCORER, summary=summary,
                     forbidden_texts=PROMPTS)
    assert text not in str(e.value)  # the error itself never repeats the prompt
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "summary.json").exists()


def test_guard_catches_json_escaped_non_ascii_and_ignores_short_texts() -> None:
    ja = PROMPTS["rtplx:ja:3"]
    page = render_report({"x": F.fig_table(pd.DataFrame({"a": [ja]}))}, manifest={}, scorer_identity={})
    with pytest.raises(PromptTextLeakError, match="#0"):
        assert_no_prompt_text(page, [ja])
    assert_no_prompt_text(page, ["short"])  # below min_chars: not checked


def test_guard_no_false_positive_on_real_translated_200(data_root) -> None:
    from interp.data.rtplx import load_translated_200

    texts = [p.text for ps in load_translated_200(data_root, ["en", "de", "zh"]).values() for p in ps]
    page = render_report(_sections(), manifest=MANIFEST, scorer_identity=SCORER, summary=SUMMARY)
    assert_no_prompt_text(page, texts)


# ----------------------------------------------------------------------------- headless Chromium
CHROMIUM = F.find_chromium()
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--virtual-time-budget=15000"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium); report rendering not checked")


def _chromium(tmp: Path, page: Path, *extra: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh user-data-dir per run
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    shutil.rmtree(profile, ignore_errors=True)
    return res


def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG with zlib (no Pillow needed) and return [h, w, channels]."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"unsupported PNG depth {depth} / colour type {ctype}"
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), dtype=np.uint8)
    prev = np.zeros(w * ch, dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        elif f == 1:  # Sub: cumulative sum per channel
            cur = (np.cumsum(line.reshape(w, ch), axis=0) & 255).reshape(-1)
        else:  # Average / Paeth depend on the pixel to the left: go pixel by pixel
            cur = np.zeros_like(line)
            for x in range(w * ch):
                a = cur[x - ch] if x >= ch else 0
                b, c = prev[x], (prev[x - ch] if x >= ch else 0)
                if f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 255
        out[y], prev = cur, cur
    return out.reshape(h, w, ch)


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path) -> None:
    html_path, _ = write_report(tmp_path / "run", sections=_sections(), manifest=MANIFEST, scorer_identity=SCORER,
                                summary=SUMMARY)
    dom = _chromium(tmp_path, html_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="js-errors" data-errors="0"' in dom.stdout, re.findall(r'id="js-errors".{0,500}', dom.stdout)
    # Each plot div now holds a rendered plotly SVG.
    plots = re.findall(r'<div id="xdetox-plot-\d+" class="plotly-graph-div[^"]*".*?class="main-svg"', dom.stdout, re.S)
    assert len(plots) == N_FIGS and dom.stdout.count('class="plot-container plotly"') == N_FIGS
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, html_path, f"--screenshot={shot}", "--window-size=900,700")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    px = _png_pixels(shot)[..., :3]
    colours = np.unique(px.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} distinct colours"
    assert (np.abs(px.astype(int) - [214, 39, 40]).sum(-1) < 30).sum() > 500  # Fig. 1's red bars are drawn


@needs_chromium
def test_headless_check_catches_js_errors_and_blocked_requests(tmp_path) -> None:
    """The probe the render test relies on does fire: a thrown error and a blocked fetch are recorded."""
    page = render_report({"Table": pd.DataFrame({"a": [1]})}, manifest={}, scorer_identity={})
    bad = page.replace("</body>", '<img src="http://192.0.2.1/x.png"><script>throw new Error("boom")</script></body>')
    path = tmp_path / "bad.html"
    path.write_text(bad, encoding="utf-8")
    dom = _chromium(tmp_path, path, "--dump-dom").stdout
    assert 'data-errors="2"' in dom and "boom" in dom and "blocked: http://192.0.2.1/x.png" in dom


# ----------------------------------------------------------------------------- layout
def test_long_and_wide_tables_scroll_and_fold() -> None:
    from interp.viz.report import INLINE_ROWS

    long = pd.DataFrame({"layer": range(45), "neuron": range(45)})
    wide = pd.DataFrame({f"column_{i}": [1.0] for i in range(40)})
    page = render_report({"Long": long, "Wide": wide}, manifest={}, scorer_identity={})
    sec = page[page.index('id="s-long"'):page.index('id="s-wide"')]
    inline, folded = sec.split("<details>", 1)
    assert inline.count("<tr") == INLINE_ROWS + 1  # header + the top rows
    assert "show all 45 rows" in folded and folded.count("<tr") == 46
    wide_sec = page[page.index('id="s-wide"'):]
    assert '<div class="table-wrap"><table' in wide_sec and "<details>" not in wide_sec.split("</section>")[0]
    assert ".table-wrap{overflow-x:auto" in page


def test_captions_and_the_verdict_table_come_first() -> None:
    from interp.viz.report import Captioned
    from interp.app.verdicts import claim_verdicts

    t = synthetic_tables()
    verdicts = claim_verdicts({})
    page = render_report({"Keys": Captioned(F.fig_key_activations(t["keys"]), "Look at the red bars.")},
                         manifest={}, scorer_identity={}, verdicts=verdicts)
    assert "<figcaption>Look at the red bars.</figcaption>" in page
    assert page.index('id="verdicts"') < page.index("<nav>") < page.index('id="s-keys"')
    assert page.count("<tr data-claim=") == len(verdicts) == 5
    assert 'data-verdict="inconclusive"' in page


# ----------------------------------------------------------------------------- fonts in headless Chromium
#: Tokens of each script the 17 languages use.
SCRIPT_SAMPLES = {"Latin": "Übermäßig", "Cyrillic": "сексу", "Arabic": "عربي", "Devanagari": "हिन्दी",
                  "Han": "你好世界", "Hangul": "한국어", "Kana": "ひらがなカタカナ"}
TOFU = "\u0378"  # an unassigned code point: every font draws it as the missing-glyph box

# Measures each sample in the page's own font stack against as many tofu boxes, into #font-probe.
_FONT_PROBE = """<pre id="font-probe"></pre><script>
document.addEventListener('DOMContentLoaded', function () {
  var samples = %s, out = {};
  function width(text) {
    var s = document.createElement('span'); s.style.fontSize = '32px'; s.style.whiteSpace = 'pre';
    s.textContent = text; document.body.appendChild(s);
    var w = s.getBoundingClientRect().width; s.remove(); return w;
  }
  var box = width('%s');
  for (var k in samples) {
    var n = Array.from(samples[k]).length;
    out[k] = {width: width(samples[k]), tofu: n * box};
  }
  var v = document.getElementById('verdicts');
  out.__verdict_top = v ? v.getBoundingClientRect().top : -1;
  out.__verdict_rows = document.querySelectorAll('#verdicts tr[data-claim]').length;
  document.getElementById('font-probe').textContent = JSON.stringify(out);
});
</script>"""


def _font_probe(tmp: Path, page_html: str, env: dict[str, str] | None = None) -> dict:
    probe = _FONT_PROBE % (json.dumps(SCRIPT_SAMPLES, ensure_ascii=False), TOFU)
    path = tmp / f"probe-{len(list(tmp.glob('probe-*')))}.html"
    path.write_text(page_html.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = _chromium(tmp, path, "--dump-dom", "--window-size=1280,900", env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="js-errors" data-errors="0"' in dom.stdout, re.findall(r'id="js-errors".{0,500}', dom.stdout)
    found = re.search(r'<pre id="font-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1), "the font probe did not run"
    import html as htmlmod

    return json.loads(htmlmod.unescape(found.group(1)))


def tofu_scripts(measured: dict) -> list[str]:
    """Return the scripts whose sample is as wide as the same number of missing-glyph boxes."""
    return [k for k in SCRIPT_SAMPLES if abs(measured[k]["width"] - measured[k]["tofu"]) < 0.5]


@needs_chromium
def test_every_script_renders_in_the_report_font_stack(tmp_path) -> None:
    from interp.app.verdicts import claim_verdicts

    page = render_report(_sections(), manifest=MANIFEST, scorer_identity=SCORER, verdicts=claim_verdicts({}))
    measured = _font_probe(tmp_path, page)
    assert tofu_scripts(measured) == [], measured  # needs fonts-noto-core + fonts-noto-cjk (make test installs them)
    assert measured["__verdict_rows"] == 5 and 0 <= measured["__verdict_top"] < 900  # on the first screen


@needs_chromium
def test_font_check_trips_without_the_fonts(tmp_path) -> None:
    """With only DejaVu visible to fontconfig, CJK, Hangul, Kana and Devanagari are tofu and the check says so."""
    dejavu = Path("/usr/share/fonts/truetype/dejavu")
    if not dejavu.is_dir():
        pytest.skip("fonts-dejavu-core not installed")
    conf = tmp_path / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig><dir>{dejavu}</dir>'
                    f"<cachedir>{tmp_path / 'fc-cache'}</cachedir></fontconfig>", encoding="utf-8")
    import os

    env = {**os.environ, "FONTCONFIG_FILE": str(conf)}
    page = render_report({"x": "y"}, manifest={}, scorer_identity={})
    missing = tofu_scripts(_font_probe(tmp_path, page, env=env))
    assert {"Han", "Hangul", "Kana", "Devanagari"} <= set(missing) and "Latin" not in missing, missing


@needs_chromium
def test_smoke_run_report_in_chromium(smoke_run: Path, tmp_path) -> None:
    """The real report: verdict table on the first screen, every script renders, no JS errors; its
    verdicts are the ones the summary's data give."""
    import os

    from interp.app.verdicts import claim_verdicts

    page = (smoke_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((smoke_run / "summary.json").read_text(encoding="utf-8"))
    again = claim_verdicts(summary).to_dict(orient="records")
    assert [(v["claim"], v["verdict"], v["test"]) for v in summary["verdicts"]] == \
        [(v["claim"], v["verdict"], v["test"]) for v in again]
    # Independent expectations, not the same function again: the model is named in the summary, and
    # C1's verdict follows from its per-language rows by the rule written out here.
    from interp.app.verdicts import MIN_PER_LANGUAGE, paper_model

    assert summary["model"]["name"] and paper_model(summary["model"]["name"]) in summary["verdicts"][0]["paper"]
    rows = [r for r in summary["toxicity_change_paired"] if r["lang"] != "all"]
    c1 = summary["verdicts"][0]
    if all(r["ci_hi"] < 0 and r["n_prompts"] >= MIN_PER_LANGUAGE for r in rows):
        assert c1["verdict"] == "holds"
    if any(r["n_prompts"] < MIN_PER_LANGUAGE for r in rows) or any(r["ci_lo"] <= 0 <= r["ci_hi"] for r in rows):
        assert c1["verdict"] != "holds"
    assert summary["scorer"]["id"] in c1["this_run"]
    c2 = summary["value_tokens"]
    assert c2["n_vectors"] == len({(r["layer"], r["neuron"]) for r in _csv(smoke_run / "stages" / "neurons" / "vocab_table.csv")})
    assert page.count("<tr data-claim=") == len(summary["verdicts"]) >= 5
    measured = _font_probe(tmp_path, page)
    assert tofu_scripts(measured) == [], measured
    assert measured["__verdict_rows"] == len(summary["verdicts"]) and 0 <= measured["__verdict_top"] < 900
    # Screenshots of the first screen and the whole page (kept where $XDETOX_SCREENSHOT_DIR says).
    out = Path(os.environ.get("XDETOX_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for name, size in (("report_first_screen.png", "1280,900"), ("report_full_page.png", "1280,16000")):
        res = _chromium(tmp_path, smoke_run / "report.html", f"--screenshot={out / name}", f"--window-size={size}")
        assert res.returncode == 0 and (out / name).is_file(), res.stderr[-2000:]
    px = _png_pixels(out / "report_first_screen.png")[..., :3]
    # The verdict badges are drawn on the first screen (green, red or grey fills of the stylesheet).
    badges = [(216, 240, 216), (247, 214, 214), (238, 238, 238)]
    assert sum(int((np.abs(px.astype(int) - c).sum(-1) < 6).sum()) for c in badges) > 300
    assert "summary.json" in page and '"toxicity_change_paired"' not in page  # linked, not inlined


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_smoke_run_report_layout(smoke_run: Path) -> None:
    """The pipeline's report: verdicts first, a caption under every figure, every table in a scrolling
    wrapper, long tables folded, summary.json linked beside it rather than inlined."""
    page = (smoke_run / "report.html").read_text(encoding="utf-8")
    body = page[page.index("<body>"):]
    assert body.index('id="verdicts"') < body.index("<nav>") < body.index('id="s-overview"')
    n_figs = body.count('<figure class="figure">')
    assert n_figs >= 5 and body.count("<figcaption>") == n_figs
    assert body.count("<table") == body.count('<div class="table-wrap"><table')
    from interp.viz.report import INLINE_ROWS

    tables = re.findall(r'(<summary>[^<]*</summary>)?<div class="table-wrap">(<table.*?</table>)</div>', body, re.S)
    inline = [t for s, t in tables if not s]
    assert inline and all(t.count("<tr") <= INLINE_ROWS + 1 for t, in zip(inline)), "a long table is not folded"
    for s, t in tables:
        if s:  # a folded table holds every row its summary promises
            assert t.count("<tr") == int(re.search(r"show all (\d+) rows", s).group(1)) + 1
    assert '<a id="summary-link" href="summary.json">' in body and (smoke_run / "summary.json").is_file()
    assert '"per_language"' not in body and "&quot;per_language&quot;" not in body
