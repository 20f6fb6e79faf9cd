"""Data records and loaders for every offline data set, plus the one hold-out split. (sources)."""
from __future__ import annotations

import csv
import io
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from interp.data.records import (
    DataFormatError,
    LabeledText,
    ParaDetoxRow,
    PreferencePair,
    _get,
    _iter_json_lines,
    _read_text,
    _require_file,
    _root,
)
from interp.data.languages import normalize_languages

PARADETOX_FILE = ("paradetox-en", "paradetox.tsv")


DAVIDSON_FILE = ("davidson-hate-offensive", "labeled_data.csv")


JIGSAW_SAMPLE = ("jigsaw-sample-ibm-max", "test_examples.csv")


LDNOOBW_DIR = "ldnoobw"


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


#: The system gettext catalogs (one ``LANG/LC_MESSAGES/*.mo`` folder per locale) every reader defaults to.
GETTEXT_DIR = "/usr/share/locale"


def gettext_parallel(languages: Iterable[str] | None = None,
                     locale_dir: str | Path = GETTEXT_DIR) -> dict[str, list[str]]:
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
                        locale_dir: str | Path = GETTEXT_DIR) -> dict[str, list[str]]:
    """Return ``{lang: [strings]}`` of each language's own gettext messages, independent of the others.

    Unlike :func:`gettext_parallel` (strings translated into *every* requested language), a
    language's list depends only on its own catalogs, so adding a language changes no other
    language's text. A language is its kept msgstrs (same filter as :func:`gettext_parallel`);
    English is the msgids kept in the catalogs of the paper's 16 other languages (a fixed set, so
    it too does not move with the run's languages). Empty lists when no catalog is installed.
    """
    from interp.data.languages import LANGUAGES as PAPER_LANGUAGES

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
