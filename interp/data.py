"""Data records and loaders for every offline data set, plus the one hold-out split.

Every loader returns plain frozen dataclasses with a stable ``id`` and a language code from
:mod:`interp.languages` (``zh`` for RTP-LX's ``ZH-Hans``). Malformed input raises
:class:`DataFormatError` naming the file, the line and the field.

Hold-out split (the only definition; everyone uses these functions):

* ``is_eval_index(i)`` is true when the first 8 hex digits of ``sha256("xdetox-eval:{i}")``,
  read as an integer, are < 30% of 2**32. It is a pure function of the RTP-LX ``Index`` and
  so picks the same prompts in every language (about 300 of the 999 translated indices, and
  about 30% of the culture-specific extras >= 999).
* The 200 translated prompts (translated-200) are all evaluation prompts. Their English lines
  are matched by normalised text to RTP-LX English ``Index`` values; those indices are
  evaluation indices in every language too (``eval_indices``).
* ``rtplx_split(prompts, "eval")`` keeps prompts whose index is an evaluation index;
  ``"train"`` keeps the rest. ``heldout_texts()`` returns the normalised text
  (:func:`normalize_text`) of every evaluation prompt in every language: RTP-LX eval rows plus
  every translated-200 line. Training corpora drop any text in that set.

Known limit: in AR/CS/DE/ES/FR/IT/ZH, index 960 is missing and indices 961..998 hold the
English prompt of the previous index (see :func:`align_by_index`); the split is by the
recorded ``Index``, so such a row may be train while its English source is eval. Text-level
filtering with ``heldout_texts`` still removes every exact evaluation text.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import re
import statistics
import struct
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

from interp.languages import LANGUAGES, UnknownLanguageError, normalize_language, normalize_languages
from interp.paths import data_root

RTPLX_DIR = "rtp-lx-v0.2"
T200_DIR = "xg-translated-rtplx-200"
PARADETOX_FILE = ("paradetox-en", "paradetox.tsv")
DAVIDSON_FILE = ("davidson-hate-offensive", "labeled_data.csv")
JIGSAW_SAMPLE = ("jigsaw-sample-ibm-max", "test_examples.csv")
LDNOOBW_DIR = "ldnoobw"

#: RTP-LX indices below this are translations of the same English prompts; the rest are extras.
RTPLX_N_TRANSLATED = 999
EVAL_FRACTION = 0.30
_EVAL_SALT = "xdetox-eval"

# RTP-LX file-name locale per language code.
_RTPLX_FILE_CODE = {lang: ("ZH-Hans" if lang == "zh" else lang.upper()) for lang in LANGUAGES}


def _rtplx_file_code(lang: str) -> str:
    """Return the locale RTP-LX puts in its file name for ``lang`` (``ZH-Hans``, ``ZH-Hant``, ``SW``)."""
    return _RTPLX_FILE_CODE.get(lang) or ("ZH-Hant" if lang == "zh-Hant" else lang.upper())
_RTPLX_NAME = re.compile(r"RTP_LX_([A-Za-z]+(?:-[A-Za-z]+)?)\.jsonl?$")


class DataFormatError(ValueError):
    """A data file is missing, empty or malformed; the message names file, line and field."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, field: str | None = None,
                 hint: str = "") -> None:
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{problem}" + (f" ({hint})" if hint else ""))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Prompt:
    """A prompt in one language. ``group`` aligns parallel items (RTP-LX Index / t200 line)."""

    id: str
    lang: str
    text: str
    index: int | None
    toxicity: float | None
    source: str
    group: int
    #: all RTP-LX annotation means (Toxicity 1-5, other harms 1-3); empty for other sources
    annotations: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class LabeledText:
    """A text with a binary label: 1 toxic, 0 clean."""

    id: str
    lang: str
    text: str
    label: int
    source: str


@dataclass(frozen=True)
class ParaDetoxRow:
    """A toxic English sentence and its 1-3 neutral paraphrases (possibly none)."""

    id: str
    toxic: str
    neutrals: tuple[str, ...]


@dataclass(frozen=True)
class PreferencePair:
    """A DPO preference pair: prompt, chosen (non-toxic) and rejected (toxic) continuation."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)


# --------------------------------------------------------------------------- helpers


def normalize_text(s: str) -> str:
    """Return ``s`` HTML-unescaped, NFKC-normalised, case-folded, with whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", html.unescape(s)).casefold().split())


def _root(root: str | Path | None) -> Path:
    return data_root(root)


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataFormatError(path, f"{what} not found", hint="check --data-root / $XDETOX_DATA")
    return path


def _read_text(path: Path) -> str:
    """Return a data file's text; errors name the file and line (not UTF-8, too large)."""
    from interp.artifacts import read_text

    return read_text(path, what="data file")


def _iter_json_lines(text: str, path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from JSON Lines text (a JSON array is accepted too)."""
    if not text.strip():
        raise DataFormatError(path, "file is empty", line=1)
    if text.lstrip().startswith("["):
        try:
            arr = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"bad JSON: {e.msg}", line=e.lineno) from None
        for i, obj in enumerate(arr, 1):
            if not isinstance(obj, dict):
                raise DataFormatError(path, f"item {i} is not a JSON object", line=None)
            yield i, obj
        return
    from interp.artifacts import MAX_LINE_BYTES

    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise DataFormatError(path, f"line is {len(line) / (1 << 20):.1f} MB; one record is never that large: "
                                  "this is not a JSON Lines file of text records", line=n)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"bad JSON: {e.msg} at column {e.colno}", line=n,
                                  hint="each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, "line is not a JSON object", line=n)
        yield n, obj


def _get(obj: Mapping[str, Any], key: str, path: str, line: int | None, types: type | tuple[type, ...] = str) -> Any:
    if key not in obj:
        raise DataFormatError(path, "missing field", line=line, field=key)
    value = obj[key]
    if not isinstance(value, types):
        raise DataFormatError(path, f"expected {getattr(types, '__name__', types)}, got {type(value).__name__}",
                              line=line, field=key)
    return value


def _as_int(value: Any, path: str, line: int | None, key: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise DataFormatError(path, f"expected an integer, got {value!r}", line=line, field=key) from None


# --------------------------------------------------------------------------- RTP-LX


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


# --------------------------------------------------------------------------- translated-200


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


# --------------------------------------------------------------------------- hold-out split


def is_eval_index(index: int) -> bool:
    """Return whether RTP-LX ``index`` is in the hash-selected evaluation split (~30%)."""
    h = int(hashlib.sha256(f"{_EVAL_SALT}:{int(index)}".encode()).hexdigest()[:8], 16)
    return h < int(EVAL_FRACTION * 2**32)


@lru_cache(maxsize=8)
def _eval_indices_cached(root: str) -> frozenset[int]:
    base = Path(root)
    t200 = base / T200_DIR / "dpo_toxicity_pairwise_en_200.jsonl"
    if not t200.is_file():
        t200 = base / "dpo_toxicity_pairwise_en_200.jsonl"
    return frozenset(_t200_index_map(base, t200 if t200.is_file() else None).values())


def t200_indices(root: str | Path | None = None) -> frozenset[int]:
    """Return the RTP-LX indices of the translated-200 prompts (all evaluation indices)."""
    return _eval_indices_cached(str(_root(root)))


def is_eval_prompt(p: Prompt, *, root: str | Path | None = None) -> bool:
    """Return whether ``p`` is an evaluation prompt (every translated-200 prompt is)."""
    if p.source == "translated200":
        return True
    if p.index is None:
        return False
    return is_eval_index(p.index) or p.index in t200_indices(root)


def rtplx_split(prompts: Iterable[Prompt], split: Literal["eval", "train"], *,
                root: str | Path | None = None) -> list[Prompt]:
    """Return the prompts of ``split``: ``eval`` = evaluation index (hash or translated-200), else ``train``."""
    if split not in ("eval", "train"):
        raise ValueError(f"split must be 'eval' or 'train', got {split!r}")
    want = split == "eval"
    return [p for p in prompts if is_eval_prompt(p, root=root) == want]


def heldout_texts(root: str | Path | None = None) -> set[str]:
    """Return the normalised texts of every evaluation prompt (RTP-LX eval split + translated-200)."""
    out = {normalize_text(p.text) for p in rtplx_split(load_rtplx(root), "eval", root=root)}
    for prompts in load_translated_200(root).values():
        out.update(normalize_text(p.text) for p in prompts)
    return out


# --------------------------------------------------------------------------- English labelled sets


def _read_paradetox_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) per record; a cell opened with ``"`` may span lines."""
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 1  # lines[0] is the header
    while i < len(lines):
        start = i + 1
        fields = next(csv.reader([lines[i]], delimiter="\t", quoting=csv.QUOTE_NONE), None) or [""]
        # A quoted cell with an embedded newline continues on the following physical lines.
        while fields and fields[-1].startswith('"') and not _closed(fields[-1]) and i + 1 < len(lines):
            more = next(csv.reader([lines[i + 1]], delimiter="\t", quoting=csv.QUOTE_NONE), None) or [""]
            if len(fields) + len(more) - 1 > 4:
                break  # the next line is a record of its own: this quote never closes
            i += 1
            fields[-1] = fields[-1] + "\n" + more[0]
            fields.extend(more[1:])
        fields = [_unquote(f) for f in fields]
        yield start, fields
        i += 1


def _closed(cell: str) -> bool:
    return len(cell) >= 2 and cell.endswith('"') and not cell.endswith('\\"')


def _unquote(cell: str) -> str:
    if "\n" in cell and len(cell) >= 2 and cell[0] == cell[-1] == '"':
        return cell[1:-1].replace('""', '"')
    return cell


def load_paradetox(root: str | Path | None = None) -> list[ParaDetoxRow]:
    """Return ParaDetox rows (``id`` = ``paradetox:{line}``); neutrals are the non-empty cells.

    Read as tab-separated with ``QUOTE_NONE``; a cell that opens with ``"`` and spans lines is
    joined (7 of the 11,935 physical lines are such continuations: 11,928 rows). Short lines
    are tolerated.
    """
    base = _root(root)
    path = base / Path(*PARADETOX_FILE) if (base / PARADETOX_FILE[0]).is_dir() else base / PARADETOX_FILE[1]
    _require_file(path, "ParaDetox TSV")
    header = _read_text(path).split("\n", 1)[0].rstrip("\r").split("\t")
    if header == [""]:
        raise DataFormatError(path, "file is empty", line=1)
    if header[:1] != ["toxic"]:
        raise DataFormatError(path, f"header must start with 'toxic', got {header[:1]}", line=1, field="toxic",
                              hint="expected columns toxic, neutral1, neutral2, neutral3")
    out: list[ParaDetoxRow] = []
    for line, fields in _read_paradetox_lines(path):
        if not fields or not fields[0].strip():
            continue
        out.append(ParaDetoxRow(id=f"paradetox:{line}", toxic=fields[0],
                                neutrals=tuple(f for f in fields[1:4] if f.strip())))
    if not out:
        raise DataFormatError(path, "file holds no rows", line=2)
    return out


def paradetox_labeled(root: str | Path | None = None) -> list[LabeledText]:
    """Return ParaDetox as labelled English texts: each toxic sentence 1, each neutral 0."""
    out: list[LabeledText] = []
    for row in load_paradetox(root):
        out.append(LabeledText(id=f"{row.id}:toxic", lang="en", text=row.toxic, label=1, source="paradetox"))
        out.extend(LabeledText(id=f"{row.id}:neutral{k}", lang="en", text=t, label=0, source="paradetox")
                   for k, t in enumerate(row.neutrals, 1))
    return out


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) from a CSV with a header holding ``required``."""
    text = _read_text(path)
    if not text.strip():
        raise DataFormatError(path, "file is empty", line=1)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = reader.fieldnames or []
        for col in required:
            if col not in fields:
                raise DataFormatError(path, f"missing column (header has {fields})", line=1, field=col)
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise DataFormatError(path, "wrong number of fields", line=reader.line_num)
            yield reader.line_num, row
    except csv.Error as e:  # e.g. a field over csv's 128 KB limit: an unclosed quote swallowing the file
        raise DataFormatError(path, f"unreadable CSV row ({e}) in columns {list(reader.fieldnames or [])}",
                              line=max(2, reader.line_num),
                              hint="a cell this large usually means an unclosed quote; fix the quoting") from None


def load_davidson(root: str | Path | None = None) -> list[LabeledText]:
    """Return Davidson tweets labelled toxic (class 0 hate / 1 offensive) = 1, clean (class 2) = 0."""
    base = _root(root)
    path = base / Path(*DAVIDSON_FILE) if (base / DAVIDSON_FILE[0]).is_dir() else base / DAVIDSON_FILE[1]
    _require_file(path, "Davidson CSV")
    out: list[LabeledText] = []
    for line, row in _csv_rows(path, ("class", "tweet")):
        cls = row["class"].strip()
        if cls not in ("0", "1", "2"):
            raise DataFormatError(path, f"class must be 0, 1 or 2, got {cls!r}", line=line, field="class")
        rid = row.get("") or str(line)
        out.append(LabeledText(id=f"davidson:{rid}", lang="en", text=row["tweet"], label=int(cls != "2"),
                               source=f"davidson:class{cls}"))
    if not out:
        raise DataFormatError(path, "file holds no rows", line=2)
    return out


def load_jigsaw(path: str | Path, label_columns: Sequence[str] = ("toxic",)) -> list[LabeledText]:
    """Return Jigsaw comments (Kaggle train/test schema) labelled 1 when any chosen column >= 0.5.

    Rows with a label of -1 (Kaggle's unscored test rows) are dropped. ``id`` uses the ``id``
    column when present, else the line number.
    """
    path = Path(path)
    _require_file(path, "Jigsaw CSV")
    if not label_columns:
        raise ValueError("load_jigsaw: label_columns is empty")
    out: list[LabeledText] = []
    for line, row in _csv_rows(path, ("comment_text", *label_columns)):
        values = []
        for col in label_columns:
            raw = row[col].strip()
            try:
                v = float(raw)
            except ValueError:
                raise DataFormatError(path, f"label must be a number in [0, 1] or -1, got {raw!r}",
                                      line=line, field=col) from None
            if not (v == -1 or 0.0 <= v <= 1.0):
                raise DataFormatError(path, f"label must be in [0, 1] or -1, got {raw!r}", line=line, field=col)
            values.append(v)
        if any(v == -1 for v in values):
            continue
        rid = row.get("id") or str(line)
        out.append(LabeledText(id=f"jigsaw:{rid}", lang="en", text=row["comment_text"],
                               label=int(any(v >= 0.5 for v in values)), source="jigsaw"))
    return out


def load_jigsaw_sample(root: str | Path | None = None) -> list[LabeledText]:
    """Return the 101-row Jigsaw sample shipped in the data root."""
    return load_jigsaw(_root(root) / Path(*JIGSAW_SAMPLE))


# --------------------------------------------------------------------------- PPLM pairs


def load_pplm_pairs(path: str | Path) -> tuple[list[PreferencePair], int]:
    """Return (pairs, number of pairs whose continuations repeated the prompt and were stripped).

    The paper's JSONL has ``prompt_text``, ``unpert_gen_text`` (chosen, non-toxic) and
    ``pert_gen_text`` (rejected, PPLM-toxic). When a continuation starts with the prompt text
    (after leading whitespace), the prompt is cut off so ``prompt + chosen`` is the full text.
    """
    path = Path(path)
    _require_file(path, "PPLM pairs JSONL")
    pairs: list[PreferencePair] = []
    n_stripped = 0
    for n, obj in _iter_json_lines(_read_text(path), str(path)):
        prompt = _get(obj, "prompt_text", str(path), n)
        chosen = _get(obj, "unpert_gen_text", str(path), n)
        rejected = _get(obj, "pert_gen_text", str(path), n)
        stripped = False
        out = []
        for text in (chosen, rejected):
            body = text.lstrip()
            if prompt.strip() and body.startswith(prompt.strip()):
                text = body[len(prompt.strip()):]
                stripped = True
            out.append(text)
        n_stripped += stripped
        meta = {k: v for k, v in obj.items() if k not in ("prompt_text", "unpert_gen_text", "pert_gen_text")
                and isinstance(v, (str, int, float, bool))}
        meta.update(line=n, prefix_stripped=stripped)
        pairs.append(PreferencePair(id=f"pplm:{n}", prompt=prompt, chosen=out[0], rejected=out[1],
                                    source="pplm", meta=meta))
    return pairs, n_stripped


# --------------------------------------------------------------------------- lexicons


def load_lexicons(root: str | Path | None = None, languages: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Return ``{lang: [entries]}`` from LDNOOBW ``<lang>.txt`` (non-empty, de-duplicated, order kept).

    There is no Indonesian list: ``id`` is simply absent. Files for languages outside the 17
    are ignored.
    """
    langs = normalize_languages(languages, where="load_lexicons(languages=)")
    base = _root(root)
    folder = base / LDNOOBW_DIR if (base / LDNOOBW_DIR).is_dir() else base
    if not folder.is_dir():
        raise DataFormatError(folder, "LDNOOBW folder not found", hint="check --data-root / $XDETOX_DATA")
    out: dict[str, list[str]] = {}
    for lang in langs:
        path = folder / f"{lang}.txt"
        if not path.is_file():
            continue
        words: list[str] = []
        seen: set[str] = set()
        for line in _read_text(path).splitlines():
            w = line.strip()
            if w and w.casefold() not in seen:
                seen.add(w.casefold())
                words.append(w)
        if not words:
            raise DataFormatError(path, "lexicon file is empty", line=1, hint="one word or phrase per line")
        out[lang] = words
    if not out:
        raise DataFormatError(folder, "no LDNOOBW <lang>.txt files found")
    return out


# --------------------------------------------------------------------------- gettext


def _mo_catalog(path: Path) -> dict[str, str]:
    """Return {msgid: msgstr} of singular messages in a .mo file (message context stripped).

    Parsed by hand rather than with ``gettext.GNUTranslations`` because that falls back to ASCII
    when a catalog has no charset header; a broken catalog yields an empty dict.
    """
    try:
        buf = path.read_bytes()
        magic = struct.unpack("<I", buf[:4])[0]
        end = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
        if end is None:
            return {}
        _, n, koff, voff = struct.unpack(end + "4I", buf[4:20])
        pairs = []
        for i in range(n):
            klen, kpos = struct.unpack(end + "2I", buf[koff + 8 * i:koff + 8 * i + 8])
            vlen, vpos = struct.unpack(end + "2I", buf[voff + 8 * i:voff + 8 * i + 8])
            pairs.append((buf[kpos:kpos + klen], buf[vpos:vpos + vlen]))
    except (OSError, struct.error):
        return {}
    charset = "utf-8"
    for k, v in pairs:
        if k == b"":
            m = re.search(rb"charset=([-\w]+)", v)
            if m:
                charset = m.group(1).decode("ascii")
    out: dict[str, str] = {}
    for k, v in pairs:
        if not k or b"\0" in k:
            continue  # header, or a plural entry (msgid NUL msgid_plural)
        try:
            msgid, msgstr = k.decode(charset), v.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        out[msgid.split("\x04", 1)[-1]] = msgstr
    return out


def _keep_gettext(msgid: str, msgstr: str) -> bool:
    return (len(msgid.split()) >= 4 and "%" not in msgid and "%" not in msgstr and bool(msgstr.strip())
            and msgstr != msgid)


_GETTEXT_DIRS = {"pt": ("pt_BR", "pt"), "zh": ("zh_CN", "zh_Hans", "zh")}


@lru_cache(maxsize=64)
def _gettext_table(lang: str, locale_dir: str) -> dict[str, str]:
    """Return {msgid: msgstr} of the kept messages of one language's catalogs (first catalog wins)."""
    base = Path(locale_dir)
    table: dict[str, str] = {}
    for sub in _GETTEXT_DIRS.get(lang, (lang,)):
        for mo in sorted((base / sub / "LC_MESSAGES").glob("*.mo")):
            for k, v in _mo_catalog(mo).items():
                if _keep_gettext(k, v):
                    table.setdefault(k, v)
    return table


@lru_cache(maxsize=4)
def _gettext_cached(langs: tuple[str, ...], locale_dir: str) -> dict[str, tuple[str, ...]]:
    per_lang: dict[str, dict[str, str]] = {lang: _gettext_table(lang, locale_dir) for lang in langs if lang != "en"}
    others = [lang for lang in langs if lang != "en"]
    if not others:
        raise ValueError("gettext_parallel needs at least one language besides English")
    common = sorted(set.intersection(*(set(per_lang[lang]) for lang in others)))
    return {lang: tuple(common if lang == "en" else [per_lang[lang][k] for k in common]) for lang in langs}


def gettext_parallel(languages: Iterable[str] | None = None,
                     locale_dir: str | Path = "/usr/share/locale") -> dict[str, list[str]]:
    """Return ``{lang: [strings]}``: parallel lists (same length and order) from gettext catalogs.

    English is the msgid, other languages the msgstr of ``<locale_dir>/<lang>/LC_MESSAGES/*.mo``
    (``pt_BR``/``zh_CN`` preferred for pt/zh). Kept: msgids of >= 4 words, no ``%``, msgstr !=
    msgid, translated into every requested language. Empty lists when no catalog is installed.
    """
    langs = tuple(normalize_languages(languages, where="gettext_parallel(languages=)"))
    if not Path(locale_dir).is_dir():
        return {lang: [] for lang in langs}
    return {lang: list(v) for lang, v in _gettext_cached(langs, str(locale_dir)).items()}


def gettext_monolingual(languages: Iterable[str] | None = None,
                        locale_dir: str | Path = "/usr/share/locale") -> dict[str, list[str]]:
    """Return ``{lang: [strings]}`` of each language's own gettext messages, independent of the others.

    Unlike :func:`gettext_parallel` (strings translated into *every* requested language), a
    language's list depends only on its own catalogs, so adding a language changes no other
    language's text. A language is its kept msgstrs (same filter as :func:`gettext_parallel`);
    English is the msgids kept in the catalogs of the paper's 16 other languages (a fixed set, so
    it too does not move with the run's languages). Empty lists when no catalog is installed.
    """
    from interp.languages import LANGUAGES as PAPER_LANGUAGES

    langs = tuple(normalize_languages(languages, where="gettext_monolingual(languages=)"))
    if not Path(locale_dir).is_dir():
        return {lang: [] for lang in langs}
    out: dict[str, list[str]] = {}
    for lang in langs:
        if lang == "en":
            ids = set().union(*(_gettext_table(x, str(locale_dir)) for x in PAPER_LANGUAGES if x != "en"))
            out[lang] = sorted(ids)
        else:
            table = _gettext_table(lang, str(locale_dir))
            out[lang] = [table[k] for k in sorted(table)]
    return out


__all__ = [
    "Prompt", "LabeledText", "ParaDetoxRow", "PreferencePair", "DataFormatError", "AlignmentReport",
    "normalize_text", "load_rtplx", "rtplx_annotations", "align_by_index", "load_translated_200",
    "is_eval_index", "is_eval_prompt", "t200_indices", "rtplx_split", "heldout_texts",
    "load_paradetox", "paradetox_labeled", "load_davidson", "load_jigsaw", "load_jigsaw_sample",
    "load_pplm_pairs", "load_lexicons", "gettext_parallel", "gettext_monolingual", "EVAL_FRACTION", "RTPLX_N_TRANSLATED",
]
