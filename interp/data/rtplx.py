"""Data records and loaders for every offline data set, plus the one hold-out split. (rtplx)."""
from __future__ import annotations

import html
import math
import re
import statistics
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from interp.data.records import (
    T200_DIR,
    DataFormatError,
    Prompt,
    _as_int,
    _get,
    _iter_json_lines,
    _read_text,
    _require_file,
    _root,
    normalize_text,
)
from interp.data.languages import LANGUAGES, UnknownLanguageError, normalize_language, normalize_languages

RTPLX_DIR = "rtp-lx-v0.2"


#: RTP-LX indices below this are translations of the same English prompts; the rest are extras.
RTPLX_N_TRANSLATED = 999


# RTP-LX file-name locale per language code.
_RTPLX_FILE_CODE = {lang: ("ZH-Hans" if lang == "zh" else lang.upper()) for lang in LANGUAGES}


def _rtplx_file_code(lang: str) -> str:
    """Return the locale RTP-LX puts in its file name for ``lang`` (``ZH-Hans``, ``ZH-Hant``, ``SW``)."""
    return _RTPLX_FILE_CODE.get(lang) or ("ZH-Hant" if lang == "zh-Hant" else lang.upper())


_RTPLX_NAME = re.compile(r"RTP_LX_([A-Za-z]+(?:-[A-Za-z]+)?)\.jsonl?$")


def _rtplx_dir(root: str | Path | None) -> Path:
    base = _root(root)
    if list(base.glob("RTP_LX_*.json*")):
        return base
    return base / RTPLX_DIR


def _parse_rtplx(text: str, path: str, lang: str) -> list[Prompt]:
    out: list[Prompt] = []
    seen: dict[int, int] = {}
    for n, obj in _iter_json_lines(text, path):
        prompt = _get(obj, "Prompt", path, n)
        index = _as_int(_get(obj, "Index", path, n, (int, str, float)), path, n, "Index")
        locale = _get(obj, "Locale", path, n)
        try:
            row_lang = normalize_language(locale, where=f"{path}:{n}: field 'Locale'")
        except UnknownLanguageError as e:
            raise DataFormatError(path, str(e).split(": ", 2)[-1], line=n, field="Locale") from None
        if row_lang != lang and not (lang == "zh-Hant" and row_lang == "zh"):  # a plain "ZH" in a Hant file
            raise DataFormatError(path, f"Locale {locale!r} does not match the file's language {lang!r}",
                                  line=n, field="Locale")
        ann = _get(obj, "Annotations", path, n, dict)
        tox = _get(ann, "Toxicity", path, n, (int, float))
        if not 1.0 <= float(tox) <= 5.0:
            raise DataFormatError(path, f"Toxicity must be within 1..5, got {tox!r}", line=n,
                                  field="Annotations.Toxicity")
        if index in seen:
            raise DataFormatError(path, f"duplicate Index {index} (first on line {seen[index]})", line=n, field="Index")
        seen[index] = n
        annotations = {k: float(v) for k, v in ann.items() if isinstance(v, (int, float))}
        out.append(Prompt(id=f"rtplx:{lang}:{index}", lang=lang, text=prompt, index=index, toxicity=float(tox),
                          source="rtplx", group=index, annotations=annotations))
    if not out:
        raise DataFormatError(path, "file holds no records", line=1)
    return out


def load_rtplx(root: str | Path | None = None, languages: Iterable[str] | None = None, *,
               zip_path: str | Path | None = None, password: str | bytes | None = None) -> list[Prompt]:
    """Return RTP-LX prompts of ``languages`` (all 17 by default), in language then file order.

    Reads ``RTP_LX_{AR..ZH-Hans}.jsonl`` (or ``.json``) from ``root`` (the data root or the
    RTP-LX folder itself), or the members of the same names in a (password-protected) release
    zip ``zip_path``. The password is used for decryption only and is never stored or logged.
    """
    langs = normalize_languages(languages, where="load_rtplx(languages=)")
    sources: dict[str, tuple[str, Any]] = {}  # lang -> (display path, reader)
    if zip_path is not None:
        zpath = Path(zip_path)
        _require_file(zpath, "RTP-LX zip")
        try:
            zf = zipfile.ZipFile(zpath)
        except zipfile.BadZipFile:
            raise DataFormatError(zpath, "not a zip file") from None
        pwd = password.encode() if isinstance(password, str) else password
        for info in zf.infolist():
            m = _RTPLX_NAME.search(info.filename)
            if not m:
                continue
            try:
                lang = normalize_language(m.group(1))
            except UnknownLanguageError:
                continue  # locales outside the 17 (later releases add some)
            sources.setdefault(lang, (f"{zpath}!{info.filename}", (zf, info, pwd)))
    else:
        folder = _rtplx_dir(root)
        if not folder.is_dir():
            raise DataFormatError(folder, "RTP-LX folder not found", hint="check --data-root / $XDETOX_DATA")
        for p in sorted(folder.iterdir()):
            m = _RTPLX_NAME.search(p.name)
            if not m:
                continue
            try:
                lang = normalize_language(m.group(1))
            except UnknownLanguageError:
                continue
            if lang not in sources or p.suffix == ".jsonl":
                sources[lang] = (str(p), p)
    out: list[Prompt] = []
    for lang in langs:
        if lang not in sources:
            where = zip_path if zip_path is not None else _rtplx_dir(root)
            raise DataFormatError(where, f"no RTP-LX file for language {lang!r} "
                                  f"(expected RTP_LX_{_rtplx_file_code(lang)}.jsonl)")
        display, src = sources[lang]
        if isinstance(src, Path):
            text = _read_text(src)
        else:
            zf, info, pwd = src
            try:
                text = zf.read(info, pwd=pwd).decode("utf-8")
            except RuntimeError as e:  # zipfile reports wrong/missing passwords this way
                msg = "wrong or missing password" if "password" in str(e).lower() else str(e)
                raise DataFormatError(display, msg, hint="pass password= (the rule is in the RTP-LX README)") from None
            except (zipfile.BadZipFile, zlib.error, UnicodeDecodeError, EOFError) as e:
                # ZipCrypto checks one byte of the password, so 1 wrong password in 256 gets past it and
                # fails later: as a bad CRC, a zlib error or undecodable text.
                raise DataFormatError(display, f"wrong password, or the zip is damaged ({type(e).__name__})",
                                      hint="pass the right password= (the rule is in the RTP-LX README), "
                                      "or re-download the zip") from None
            except NotImplementedError:
                raise DataFormatError(display, "unsupported zip encryption/compression (e.g. AES)",
                                      hint="extract it with `7z x` and pass the folder as root") from None
        out.extend(_parse_rtplx(text, display, lang))
    return out


def rtplx_annotations(prompts: Iterable[Prompt]) -> dict[str, dict[str, float]]:
    """Return ``{prompt id: {annotation name: mean rating}}`` for RTP-LX prompts."""
    return {p.id: dict(p.annotations) for p in prompts}


@dataclass(frozen=True)
class AlignmentReport:
    """What :func:`align_by_index` kept and dropped, and why (ids and indices only, no text)."""

    languages: tuple[str, ...]
    reference: str
    n_candidates: int
    n_kept: int
    extras: dict[str, int]                      # lang -> rows with Index >= 999 (not parallel)
    missing: dict[int, tuple[str, ...]]          # index -> languages lacking it
    shifted: dict[str, tuple[int, ...]]          # lang -> indices in a run whose text fits index±1 better
    outliers: dict[str, tuple[int, ...]]         # lang -> indices with an extreme length ratio

    def dropped(self) -> set[tuple[str, int]]:
        """Return the dropped (language, index) rows (missing indices excluded)."""
        return {(lang, i) for d in (self.shifted, self.outliers) for lang, idx in d.items() for i in idx}

    def summary(self) -> str:
        """Return a one-paragraph summary of the alignment check."""
        n_shift = sum(len(v) for v in self.shifted.values())
        n_out = sum(len(v) for v in self.outliers.values())
        return (f"aligned {self.n_kept}/{self.n_candidates} indices across {len(self.languages)} languages; "
                f"{len(self.missing)} indices missing somewhere, {n_shift} rows in shifted runs "
                f"({', '.join(sorted(k for k, v in self.shifted.items() if v)) or 'none'}), "
                f"{n_out} length-ratio outliers")


#: |log length ratio - language median| above this (a factor of 3) flags a single row.
OUTLIER_LOG_RATIO = math.log(3.0)


#: a run is shifted when the neighbour fit is this much better than the in-place fit.
SHIFT_MARGIN = 2.0


_MIN_RUN = 5


def _log_ratio(a: str, b: str) -> float:
    return math.log(max(len(a), 1) / max(len(b), 1))


def align_by_index(prompts: Iterable[Prompt], *, require_all: bool = True,
                   reference: str = "en") -> tuple[dict[int, dict[str, Prompt]], AlignmentReport]:
    """Return ``({index: {lang: prompt}}, report)`` for the translated RTP-LX indices (< 999).

    Rule, per language against ``reference`` (English when present, else the first language):
    1. indices >= 999 are culture-specific extras, never parallel: excluded;
    2. an index missing in any language is dropped (reported in ``missing``);
    3. each run of consecutive indices (split at that language's gaps) is compared with the
       reference by length: the mean |log(len ratio) - language median| at the same index vs
       at index-1 / index+1; if a neighbour fits ``SHIFT_MARGIN`` times better the whole run is
       misaligned (RTP-LX: 961..998 in AR/CS/DE/ES/FR/IT/ZH follow a missing 960);
    4. a single row whose |log ratio - median| > log 3 is an outlier and dropped.
    With ``require_all`` only indices kept in every language are returned.
    """
    by_lang: dict[str, dict[int, Prompt]] = {}
    extras: dict[str, int] = {}
    for p in prompts:
        if p.index is None:
            raise ValueError(f"{p.id}: align_by_index needs RTP-LX prompts with an Index")
        if p.index >= RTPLX_N_TRANSLATED:
            extras[p.lang] = extras.get(p.lang, 0) + 1
            continue
        if p.index in by_lang.setdefault(p.lang, {}):
            raise ValueError(f"{p.id}: duplicate Index {p.index} for language {p.lang}")
        by_lang[p.lang][p.index] = p
    langs = tuple(sorted(by_lang, key=lambda lang: (LANGUAGES.index(lang) if lang in LANGUAGES else len(LANGUAGES),
                                                    lang)))
    if not langs:
        raise ValueError("align_by_index: no prompts with Index < 999")
    ref = reference if reference in by_lang else langs[0]
    all_idx = sorted(set().union(*(set(m) for m in by_lang.values())))
    missing = {i: tuple(lang for lang in langs if i not in by_lang[lang]) for i in all_idx}
    missing = {i: v for i, v in missing.items() if v}
    shifted: dict[str, tuple[int, ...]] = {}
    outliers: dict[str, tuple[int, ...]] = {}
    ref_map = by_lang[ref]
    for lang in langs:
        if lang == ref:
            continue
        m = by_lang[lang]
        common = [i for i in sorted(m) if i in ref_map]
        if not common:
            continue
        med = statistics.median(_log_ratio(m[i].text, ref_map[i].text) for i in common)

        def dev(i: int, j: int) -> float | None:
            return abs(_log_ratio(m[i].text, ref_map[j].text) - med) if j in ref_map else None

        # runs of consecutive indices present in this language
        runs: list[list[int]] = []
        for i in sorted(m):
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        bad: list[int] = []
        for run in runs:
            if len(run) < _MIN_RUN:
                continue
            fits = {}
            for s in (-1, 0, 1):
                ds = [d for i in run if (d := dev(i, i + s)) is not None]
                fits[s] = statistics.mean(ds) if ds else math.inf
            if min(fits[-1], fits[1]) * SHIFT_MARGIN < fits[0]:
                bad.extend(run)
        shifted[lang] = tuple(bad)
        bad_set = set(bad)
        outliers[lang] = tuple(i for i in common if i not in bad_set and (dev(i, i) or 0.0) > OUTLIER_LOG_RATIO)
    dropped = {(lang, i) for d in (shifted, outliers) for lang, idx in d.items() for i in idx}
    aligned: dict[int, dict[str, Prompt]] = {}
    for i in all_idx:
        row = {lang: by_lang[lang][i] for lang in langs if i in by_lang[lang] and (lang, i) not in dropped}
        if row and (not require_all or len(row) == len(langs)):
            aligned[i] = row
    report = AlignmentReport(languages=langs, reference=ref, n_candidates=len(all_idx), n_kept=len(aligned),
                             extras=extras, missing=missing, shifted=shifted, outliers=outliers)
    return aligned, report


def load_translated_200(root: str | Path | None = None,
                        languages: Iterable[str] | None = None) -> dict[str, list[Prompt]]:
    """Return ``{lang: [200 prompts]}`` of translated-200, parallel by line (``group`` = line).

    Text is HTML-unescaped. ``index`` is the RTP-LX Index of the English line when the English
    text matches an RTP-LX English prompt (on every language's line), else ``None``.
    """
    langs = normalize_languages(languages, where="load_translated_200(languages=)")
    base = _root(root)
    folder = base / T200_DIR if (base / T200_DIR).is_dir() else base
    files = {}
    for p in sorted(folder.glob("dpo_toxicity_pairwise_*_200.jsonl")):
        code = p.name[len("dpo_toxicity_pairwise_"):-len("_200.jsonl")]
        try:
            files[normalize_language(code)] = p
        except UnknownLanguageError:
            raise DataFormatError(p, f"unknown language {code!r} in the file name",
                                  hint=f"supported codes: {', '.join(LANGUAGES)}") from None
    raw: dict[str, list[str]] = {}
    for lang in langs:
        if lang not in files:
            raise DataFormatError(folder / f"dpo_toxicity_pairwise_{lang}_200.jsonl", "translated-200 file not found",
                                  hint="check --data-root / $XDETOX_DATA")
        path = files[lang]
        raw[lang] = [html.unescape(_get(obj, "Prompt", str(path), n))
                     for n, obj in _iter_json_lines(_read_text(path), str(path))]
    lengths = {lang: len(v) for lang, v in raw.items()}
    if len(set(lengths.values())) > 1:
        raise DataFormatError(folder, f"translated-200 files are not parallel: line counts {lengths}")
    index_of_line = _t200_index_map(base, files.get("en"))
    return {lang: [Prompt(id=f"t200:{lang}:{n}", lang=lang, text=t, index=index_of_line.get(n), toxicity=None,
                          source="translated200", group=n) for n, t in enumerate(texts)]
            for lang, texts in raw.items()}


def _t200_index_map(base: Path, en_file: Path | None) -> dict[int, int]:
    """Return {t200 line: RTP-LX Index} for English lines whose text is an RTP-LX English prompt."""
    if en_file is None:
        return {}
    try:
        en = load_rtplx(base, ["en"])
    except (DataFormatError, FileNotFoundError):
        return {}
    by_text = {normalize_text(p.text): p.index for p in en}
    out = {}
    for n, obj in _iter_json_lines(_read_text(en_file), str(en_file)):
        idx = by_text.get(normalize_text(str(obj.get("Prompt", ""))))
        if idx is not None:
            out[n - 1] = int(idx)
    return out
