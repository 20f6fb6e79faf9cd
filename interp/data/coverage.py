"""Which per-language facts and data a study has, per language: the gaps are reported, not fatal.

A language outside the paper's 17 may lack a lexicon, a translated-200 file (so no bilingual
retrieval), a known script, or a Perspective model. :func:`language_coverage` lists, for each
requested language, what is there and what each gap means for the study.
"""
from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from interp.data.languages import language_info, normalize_languages

COVERAGE_COLUMNS = ("lang", "name", "paper", "script", "rtplx_prompts", "translated200", "lexicon",
                    "perspective", "gaps")


def rtplx_languages(root: str | os.PathLike[str] | None = None, *, zip_path: str | os.PathLike[str] | None = None
                    ) -> list[str]:
    """Return the languages that have an RTP-LX file under the data root (or in a release zip)."""
    import zipfile
    from pathlib import Path

    from interp.data import rtplx
    from interp.data.languages import UnknownLanguageError, normalize_language

    if zip_path is not None:
        names = [Path(i.filename).name for i in zipfile.ZipFile(zip_path).infolist()]
    else:
        folder = rtplx._rtplx_dir(root)
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    out: list[str] = []
    for n in sorted(names):
        m = rtplx._RTPLX_NAME.search(n)
        if not m:
            continue
        try:
            code = normalize_language(m.group(1))
        except UnknownLanguageError:
            continue  # e.g. BCMS: no single ISO 639-1 code
        if code not in out:
            out.append(code)
    return out


def language_coverage(languages: Iterable[str] | None = None, root: str | os.PathLike[str] | None = None, *,
                      prompts: Iterable[object] | None = None) -> pd.DataFrame:
    """Return one row per language: its facts, the data found for it, and the ``gaps`` in words.

    ``prompts`` (RTP-LX records already loaded) saves reading the RTP-LX files again.
    """
    from interp.data import records
    from interp.data import rtplx
    from interp.data import sources

    langs = normalize_languages(languages, where="language_coverage(languages=)")
    if prompts is None:
        try:
            prompts = rtplx.load_rtplx(root, [lang for lang in langs if lang in rtplx_languages(root)])
        except (OSError, ValueError):
            prompts = []
    n_rtplx: dict[str, int] = {}
    for p in prompts:
        n_rtplx[p.lang] = n_rtplx.get(p.lang, 0) + 1  # type: ignore[attr-defined]
    base = records._root(root)
    t200 = base / records.T200_DIR
    lex = base / sources.LDNOOBW_DIR
    rows = []
    for lang in langs:
        info = language_info(lang)
        has_t200 = (t200 / f"dpo_toxicity_pairwise_{lang}_200.jsonl").is_file()
        has_lex = (lex / f"{lang}.txt").is_file()
        gaps = []
        if not n_rtplx.get(lang):
            gaps.append("no RTP-LX prompts: no evaluation, key activations or sweep")
        if not has_t200:
            gaps.append("no translated-200 file: no bilingual retrieval (left out of the correlation)")
        if not has_lex:
            gaps.append("no LDNOOBW lexicon: no lexicon hits, the lexicon scorer gives 0")
        if info.perspective is None:
            gaps.append("no Perspective TOXICITY model: Perspective scores fail")
        if info.script is None:
            gaps.append("script unknown")
        rows.append({"lang": lang, "name": info.name, "paper": info.paper, "script": info.script or "unknown",
                     "rtplx_prompts": n_rtplx.get(lang, 0), "translated200": has_t200, "lexicon": has_lex,
                     "perspective": info.perspective or "none", "gaps": "; ".join(gaps)})
    return pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))


__all__ = ["language_coverage", "rtplx_languages", "COVERAGE_COLUMNS"]
