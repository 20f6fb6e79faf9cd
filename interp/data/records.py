"""Data records and loaders for every offline data set, plus the one hold-out split.

Every loader returns plain frozen dataclasses with a stable ``id`` and a language code from
:mod:`interp.data.languages` (``zh`` for RTP-LX's ``ZH-Hans``). Malformed input raises
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
filtering with ``heldout_texts`` still removes every exact evaluation text."""
from __future__ import annotations

import html
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from interp.core.paths import data_root

T200_DIR = "xg-translated-rtplx-200"


class DataFormatError(ValueError):
    """A data file is missing, empty or malformed; the message names file, line and field."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, field: str | None = None,
                 hint: str = "") -> None:
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{problem}" + (f" ({hint})" if hint else ""))


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
    from interp.core.artifacts import read_text

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
    from interp.core.artifacts import MAX_LINE_BYTES

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
