"""report.html (self-contained: every figure and table, the run manifest, the scorer identity) and
summary.json.

plotly.js is inlined once in the page head; a Content-Security-Policy forbids every network
request, so the report opens offline and never phones home. RTP-LX prompt text must never
appear (its authors ask that it stay off public pages): :func:`assert_no_prompt_text` checks
a page against the prompts, and :func:`write_report` runs it when given ``forbidden_texts``.
"""
from __future__ import annotations

import html as htmlmod
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from interp.core.artifacts import atomic_write_text, to_jsonable, write_json



@dataclass(frozen=True)
class Captioned:
    """A figure with its one-line caption (what to look at)."""

    figure: go.Figure
    caption: str


ReportItem = Union[go.Figure, Captioned, pd.DataFrame, str]
#: Tables longer than this show their first rows inline and the rest in a <details> element.
INLINE_ROWS: int = 12

#: Content-Security-Policy of the page: inline code only, no network at all.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'")

#: Font stack covering the scripts of the 17 languages (Debian: fonts-noto-core, fonts-noto-cjk);
#: the browser falls back per glyph, so each script finds its font.
FONT_STACK = ('system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans Arabic", "Noto Naskh Arabic", '
              '"Noto Sans Devanagari", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", '
              '"Noto Sans CJK TC", "DejaVu Sans", sans-serif')

_STYLE = """
body{font-family:__FONTS__;margin:0 auto;max-width:1200px;padding:0 24px;color:#222}
h1{margin-top:24px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:40px}
nav ul{columns:2} table.xd{border-collapse:collapse;font-size:13px;margin:8px 0}
table.xd th,table.xd td{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.xd th{background:#e8eef7} table.xd td:first-child,table.xd th:first-child{text-align:left}
.table-wrap{overflow-x:auto;max-width:100%} details{margin:4px 0 12px 0} summary{cursor:pointer;color:#1f5fa8}
pre{background:#f6f8fa;padding:12px;overflow:auto;font-size:12px} .note{color:#555}
figure.figure{margin:12px 0 24px 0} figcaption{color:#444;font-size:14px;margin-top:4px}
table.verdicts{border-collapse:collapse;font-size:14px;width:100%} table.verdicts th,table.verdicts td{border:1px solid #ccc;padding:6px 8px;text-align:left;vertical-align:top}
table.verdicts th{background:#e8eef7} .v{font-weight:bold;white-space:nowrap;padding:2px 6px;border-radius:4px}
.v-holds{background:#d8f0d8;color:#145214} .v-does-not-hold{background:#f7d6d6;color:#7a1010} .v-inconclusive{background:#eee;color:#444}
td.test{font-size:12px;color:#444}
""".replace("__FONTS__", FONT_STACK)

# Collects uncaught errors into the DOM so a headless browser's --dump-dom shows them.
_ERROR_PROBE = """
window.__xdetoxErrors = [];
function __xdetoxRecord(msg) {
  window.__xdetoxErrors.push(msg);
  var el = document.getElementById('js-errors');
  if (el) { el.setAttribute('data-errors', String(window.__xdetoxErrors.length)); el.textContent = window.__xdetoxErrors.join('\\n'); }
}
window.addEventListener('error', function (e) { __xdetoxRecord('error: ' + String(e.message || e)); });
// A blocked network request (the CSP forbids all) is a bug in the report too.
document.addEventListener('securitypolicyviolation', function (e) { __xdetoxRecord('blocked: ' + e.blockedURI); });
document.addEventListener('DOMContentLoaded', function () {
  var el = document.getElementById('js-errors');
  if (el && window.__xdetoxErrors.length) { el.setAttribute('data-errors', String(window.__xdetoxErrors.length)); el.textContent = window.__xdetoxErrors.join('\\n'); }
});
"""


class PromptTextLeakError(ValueError):
    """A report contains RTP-LX prompt text; only ids and aggregates may be published."""


@dataclass
class ReportSection:
    """One report section: a title, an optional note, and figures / tables / paragraphs in order."""

    title: str
    items: list[ReportItem] = field(default_factory=list)
    note: str = ""


# ----------------------------------------------------------------------------- prompt-text guard
_JSON_ESC = re.compile(r"\\u([0-9a-fA-F]{4})")
_WS = re.compile(r"\s+")


def _normalize(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def _unescape_page(page: str) -> str:
    """Return ``page`` with JSON ``\\uXXXX``/``\\/`` escapes and HTML entities decoded, whitespace collapsed."""
    def repl(m: re.Match[str]) -> str:
        return chr(int(m.group(1), 16))

    text = _JSON_ESC.sub(repl, page)
    # Surrogate pairs from JSON escapes: recombine, dropping unpaired halves.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = text.replace("\\/", "/").replace('\\"', '"').replace("\\n", " ").replace("\\t", " ")
    return _normalize(htmlmod.unescape(text))


def _strip_plotlyjs(page: str) -> str:
    """Return ``page`` without the inlined plotly.js bundle (library code, never data)."""
    from plotly.offline import get_plotlyjs

    return page.replace(get_plotlyjs(), "")


_TAG = re.compile(r"<[^<>]*>")
_NON_ALNUM = re.compile(r"[\W_]+")
_BASE = np.uint64(1_000_003)


def _key(text: str) -> str:
    """Return the matching key of ``text``: casefolded letters and digits only, so whitespace, <br>,
    punctuation and line breaks a figure inserts cannot hide a prompt."""
    return _NON_ALNUM.sub("", text.casefold())


def _shingle_hashes(key: str, width: int) -> np.ndarray:
    """Return the polynomial hash (mod 2**64) of every ``width``-character window of ``key``."""
    if len(key) < width:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer(key.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - width + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):  # Horner over the window offsets: width vector ops, wrapping mod 2**64
            h = h * _BASE + codes[j:j + n]
    return h


def assert_no_prompt_text(html: str, texts: Iterable[str] | Mapping[str, str], *, min_chars: int = 20) -> None:
    """Raise :class:`PromptTextLeakError` if any ``min_chars``-character stretch of any prompt is in ``html``.

    Every window of every prompt is matched (not only its start), so a prompt's tail or a prompt
    minus its first characters is caught too. Matching is on letters and digits only, casefolded,
    after JSON escapes and HTML entities are decoded; the page is checked both as is (text in tag
    attributes) and with its tags removed (text split by ``<b>``/``<br>``/``<span>``), so plotly
    hover text and HTML tables are covered. The windows are 64-bit rolling hashes compared in one
    vectorised pass; a hash hit is confirmed on the text. ``texts`` may map ids to texts (the error
    then names ids; it never repeats the text). Prompts with fewer than ``min_chars`` letters and
    digits are not checked.
    """
    items = list(texts.items()) if isinstance(texts, Mapping) else [(f"#{i}", t) for i, t in enumerate(texts)]
    keys = [(k, _key(str(t))) for k, t in items]
    keys = [(k, t) for k, t in keys if len(t) >= min_chars]
    if not keys:
        return
    # All prompts' windows in one pass over their concatenation, dropping windows that cross a boundary.
    lens = np.array([len(t) for _, t in keys])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    allh = _shingle_hashes("".join(t for _, t in keys), min_chars)
    owner_all = np.repeat(np.arange(len(keys)), lens)[:len(allh)]
    ok = np.arange(len(allh)) + min_chars <= (starts + lens)[owner_all]
    every, owner = allh[ok], owner_all[ok]
    wanted = np.unique(every)
    table = np.zeros(1 << 25, dtype=bool)  # a 32 MB prefilter on the low hash bits: exact lookup only for its hits
    table[(wanted & np.uint64((1 << 25) - 1)).astype(np.int64)] = True
    page = _unescape_page(_strip_plotlyjs(html))
    windows: set[str] = set()
    found = np.zeros(0, dtype=np.uint64)
    for variant in (page, _TAG.sub("", page)):
        pk = _key(variant)
        ph = _shingle_hashes(pk, min_chars)
        maybe = np.flatnonzero(table[(ph & np.uint64((1 << 25) - 1)).astype(np.int64)])
        pos = np.minimum(np.searchsorted(wanted, ph[maybe]), len(wanted) - 1)
        hit = maybe[wanted[pos] == ph[maybe]]
        windows.update(pk[i:i + min_chars] for i in hit.tolist())
        found = np.union1d(found, ph[hit])
    # Owners of the hit hashes, each confirmed on the text (a 64-bit hash collision names no one).
    if found.size:
        pos = np.minimum(np.searchsorted(found, every), len(found) - 1)
        cand = np.unique(owner[found[pos] == every]).tolist()
    else:
        cand = []
    hits = sorted(keys[j][0] for j in cand if any(keys[j][1][i:i + min_chars] in windows
                                                    for i in range(len(keys[j][1]) - min_chars + 1)))
    if hits:
        shown = ", ".join(hits[:10]) + (" ..." if len(hits) > 10 else "")
        raise PromptTextLeakError(
            f"the report contains the text of {len(hits)} RTP-LX prompt(s) ({shown}); publish only ids and "
            "aggregates: remove prompt text from every table and figure before writing the report")


# ----------------------------------------------------------------------------- rendering
def _table_html(df: pd.DataFrame, max_rows: int = 400, inline_rows: int | None = None) -> str:
    """Return ``df`` as a horizontally scrolling table; rows past ``inline_rows`` go in a <details>."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if v != v else (f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}")
        return str(v)

    def html_of(part: pd.DataFrame) -> str:
        return part.to_html(index=False, escape=True, border=0, classes="xd", na_rep="–",
                            formatters={c: fmt for c in part.columns})

    inline = INLINE_ROWS if inline_rows is None else inline_rows
    shown = df.head(max_rows)
    body = f'<div class="table-wrap">{html_of(shown.head(inline))}</div>'
    if len(shown) > inline:
        body += (f'<details><summary>show all {len(shown)} rows</summary><div class="table-wrap">'
                 f'{html_of(shown)}</div></details>')
    if len(df) > max_rows:
        body += f'<p class="note">showing {max_rows} of {len(df)} rows</p>'
    return body


def verdict_table_html(verdicts: pd.DataFrame) -> str:
    """Return the verdict table (claim, paper, this run, verdict, deciding test) as HTML."""
    rows = []
    for r in verdicts.to_dict(orient="records"):
        v = str(r["verdict"])
        cls = "v-" + re.sub(r"[^a-z]+", "-", v.lower()).strip("-")
        rows.append(
            f'<tr data-claim="{htmlmod.escape(str(r["claim"]))}" data-verdict="{htmlmod.escape(v)}">'
            f'<td><b>{htmlmod.escape(str(r["claim"]))}</b> {htmlmod.escape(str(r["statement"]))}</td>'
            f'<td>{htmlmod.escape(str(r["paper"]))}</td><td>{htmlmod.escape(str(r["this_run"]))}</td>'
            f'<td><span class="v {cls}">{htmlmod.escape(v)}</span></td>'
            f'<td class="test">{htmlmod.escape(str(r["test"]))}</td></tr>')
    head = "<tr><th>claim</th><th>paper</th><th>this run (95% CI, n)</th><th>verdict</th><th>deciding test</th></tr>"
    return f'<div class="table-wrap"><table class="verdicts">{head}{"".join(rows)}</table></div>'


def _slug(title: str, used: set[str]) -> str:
    base = "s-" + (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section")
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}-{n}", n + 1
    used.add(slug)
    return slug


def _as_sections(sections: Sequence[ReportSection] | Mapping[str, ReportItem | Sequence[ReportItem]]
                 ) -> list[ReportSection]:
    if isinstance(sections, Mapping):
        out = []
        for title, items in sections.items():
            if isinstance(items, (go.Figure, Captioned, pd.DataFrame, str)):
                items = [items]
            out.append(ReportSection(str(title), list(items)))
        return out
    out = list(sections)
    bad = [type(s).__name__ for s in out if not isinstance(s, ReportSection)]
    if bad:
        raise TypeError(f"sections must be ReportSection objects or a {{title: items}} dict, got {bad}")
    return out


def render_report(sections: Sequence[ReportSection] | Mapping[str, Any], *, manifest: Mapping[str, Any],
                  scorer_identity: Mapping[str, Any], summary: Mapping[str, Any] | None = None,
                  title: str = "xdetox report", verdicts: pd.DataFrame | None = None,
                  summary_link: str | None = None, verdict_note: str = "") -> str:
    """Return the report page as one self-contained HTML string (plotly.js inlined once).

    ``verdicts`` (:func:`interp.app.verdicts.claim_verdicts`) opens the page. With ``summary_link``
    the summary is linked as that file beside the report instead of inlined.
    """
    from plotly.offline import get_plotlyjs

    secs = _as_sections(sections)
    used: set[str] = set()
    parts: list[str] = []
    toc: list[str] = []
    n_fig = 0
    lead = ""  # the answers come first, above the table of contents
    if verdicts is not None:
        note = f'<p class="note">{htmlmod.escape(verdict_note)}</p>' if verdict_note else ""
        lead = ('<section id="verdicts"><h2>Verdicts: did the paper\'s claims hold on this run?</h2>'
                f"{note}{verdict_table_html(verdicts)}</section>")
    for sec in secs:
        sid = _slug(sec.title, used)
        toc.append(f'<li><a href="#{sid}">{htmlmod.escape(sec.title)}</a></li>')
        parts.append(f'<section id="{sid}"><h2>{htmlmod.escape(sec.title)}</h2>')
        if sec.note:
            parts.append(f'<p class="note">{htmlmod.escape(sec.note)}</p>')
        for item in sec.items:
            if isinstance(item, (go.Figure, Captioned)):
                n_fig += 1
                fig, cap = (item.figure, item.caption) if isinstance(item, Captioned) else (item, "")
                parts.append('<figure class="figure">' + fig.to_html(
                    full_html=False, include_plotlyjs=False, div_id=f"xdetox-plot-{n_fig}",
                    config={"displaylogo": False, "responsive": True})
                    + (f"<figcaption>{htmlmod.escape(cap)}</figcaption>" if cap else "") + "</figure>")
            elif isinstance(item, pd.DataFrame):
                parts.append(_table_html(item))
            elif isinstance(item, str):
                parts.append(f"<p>{htmlmod.escape(item)}</p>")
            else:
                raise TypeError(f"section {sec.title!r}: cannot render a {type(item).__name__}; "
                                "use a plotly Figure, a DataFrame or a string")
        parts.append("</section>")
    meta = [("Scorer identity", scorer_identity), ("Run manifest", manifest)]
    if summary is not None and not summary_link:
        meta.insert(0, ("Summary", summary))
    for name, obj in meta:
        sid = _slug(name, used)
        toc.append(f'<li><a href="#{sid}">{name}</a></li>')
        text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, sort_keys=False)
        link = ""
        if name == "Run manifest" and summary_link:
            href = htmlmod.escape(summary_link)
            link = (f'<p>Every number of this report, machine-readable: <a id="summary-link" href="{href}">'
                    f"{href}</a> (the file beside this report).</p>")
        parts.append(f'<section id="{sid}"><h2>{name}</h2>{link}<details><summary>show</summary>'
                     f'<pre>{htmlmod.escape(text)}</pre></details></section>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{htmlmod.escape(title)}</title>", f"<style>{_STYLE}</style>",
        f"<script>{_ERROR_PROBE}</script>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>", f"<h1>{htmlmod.escape(title)}</h1>", lead,
        f'<nav><h2>Contents</h2><ul>{"".join(toc)}</ul></nav>', *parts,
        '<div id="js-errors" data-errors="0" hidden></div>', "</body></html>",
    ])


def write_report(out_dir: str | os.PathLike[str], *,
                 sections: Sequence[ReportSection] | Mapping[str, Any], manifest: Mapping[str, Any],
                 scorer_identity: Mapping[str, Any], summary: Mapping[str, Any],
                 forbidden_texts: Iterable[str] | Mapping[str, str] | None = None,
                 title: str = "xdetox report", verdicts: pd.DataFrame | None = None,
                 verdict_note: str = "") -> tuple[Path, Path]:
    """Write ``report.html`` and ``summary.json`` into ``out_dir`` atomically and return both paths.

    With ``forbidden_texts`` (the RTP-LX prompts) the page is checked by
    :func:`assert_no_prompt_text` first and nothing is written if it leaks any.
    """
    page = render_report(sections, manifest=manifest, scorer_identity=scorer_identity, summary=summary, title=title,
                         verdicts=verdicts, summary_link="summary.json", verdict_note=verdict_note)
    if forbidden_texts is not None:
        forbidden = dict(forbidden_texts) if isinstance(forbidden_texts, Mapping) else list(forbidden_texts)
        assert_no_prompt_text(page, forbidden)
        assert_no_prompt_text(json.dumps(to_jsonable(summary), ensure_ascii=False), forbidden)
    out = Path(out_dir)
    html_path = atomic_write_text(out / "report.html", page)
    json_path = write_json(out / "summary.json", summary)
    return html_path, json_path


__all__ = ["write_report", "render_report", "ReportSection", "Captioned", "verdict_table_html", "assert_no_prompt_text",
           "PromptTextLeakError", "CSP", "FONT_STACK"]
