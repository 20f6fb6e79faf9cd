"""Bad-word lexicon matching (LDNOOBW), one implementation for every caller.

Used by vocabulary projections (``is_toxic_token``) and by the lexicon toxicity scorer
(``toxic_hits``). Matching rules, applied to NFKC-normalised, case-folded text with whitespace
collapsed to single spaces:

* Scripts written with spaces (Latin, Cyrillic, Devanagari, Arabic, ...): an entry matches only
  as whole words: the characters just before and after it must not be letters, combining marks,
  digits or ``_`` (so ``ass`` does not match inside ``class``; Devanagari vowel signs count as
  part of the word). Multi-word entries match across any run of whitespace.
* Han, Hiragana and Katakana (no spaces): substring match, except single-character entries,
  which need the same boundaries as above (``乳`` alone, but not inside ``乳制品``).
* Hangul: the entry must start a word but may be followed by more syllables, because Korean
  attaches particles to the word (``개새끼가`` matches ``개새끼``).
* A side of an entry whose edge character is not a letter/digit (``🖕``, ``s&m``) needs no boundary.

Tokens (``is_toxic_token``): tokenizer markers (``Ġ``, ``▁``, ``Ċ``, ``##``) and surrounding
spaces are stripped, then a token counts when it equals an entry, or contains a single-word entry
of >= 4 characters (``fucking`` via ``fuck``; ``class`` does not count via ``ass``), or, for
Han/kana/Hangul entries, contains an entry of >= 2 characters.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import regex

from interp.data.languages import normalize_language

_WORD = r"[\p{L}\p{M}\p{N}_]"
_NO_SPACE = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}]")
_HANGUL = regex.compile(r"\p{Hangul}")
_WORDCHAR = regex.compile(_WORD)
_TOKEN_MARKERS = ("Ġ", "▁", "Ċ", "##")  # pass decoded strings for byte-level non-ASCII tokens

MIN_TOKEN_SUBSTRING = 4
MIN_TOKEN_SUBSTRING_CJK = 2


def normalize(text: str) -> str:
    """Return ``text`` NFKC-normalised, case-folded, with whitespace runs collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _guards(entry: str) -> tuple[str, str]:
    """Return the (left, right) lookaround guards an entry needs, from its edge characters."""
    first, last = entry[0], entry[-1]
    single_cjk = len(entry) == 1 and bool(_NO_SPACE.match(entry))

    def needs(c: str, side: str) -> bool:
        if not _WORDCHAR.match(c):
            return False
        if _NO_SPACE.match(c):
            return single_cjk
        if _HANGUL.match(c):
            return side == "left"
        return True

    left = f"(?<!{_WORD})" if needs(first, "left") else ""
    right = f"(?!{_WORD})" if needs(last, "right") else ""
    return left, right


def _compile(entries: Iterable[str]) -> regex.Pattern | None:
    parts = []
    for e in sorted(set(entries), key=lambda s: (-len(s), s)):
        left, right = _guards(e)
        parts.append(f"{left}{regex.escape(e)}{right}")
    return regex.compile("|".join(parts)) if parts else None


def _is_cjk_entry(entry: str) -> bool:
    return bool(_NO_SPACE.search(entry) or _HANGUL.search(entry))


@dataclass
class Lexicon:
    """Per-language bad-word lists with script-aware matching (see the module docstring)."""

    words: Mapping[str, list[str]]
    _entries: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _patterns: dict[str, regex.Pattern | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._entries = {}
        for lang, ws in self.words.items():
            code = normalize_language(lang, where="Lexicon(words=)")
            normed = tuple(dict.fromkeys(n for w in ws if (n := normalize(w))))
            self._entries[code] = tuple(dict.fromkeys(self._entries.get(code, ()) + normed))
        self._patterns = {}

    @classmethod
    def from_root(cls, root: str | Path | None = None) -> "Lexicon":
        """Return the LDNOOBW lexicon of the data root."""
        from interp.data.sources import load_lexicons

        return cls(load_lexicons(root))

    @property
    def languages(self) -> tuple[str, ...]:
        """Return the languages that have a list."""
        return tuple(self._entries)

    def entries(self, lang: str) -> tuple[str, ...]:
        """Return the normalised entries of ``lang`` (empty when it has no list, e.g. ``id``)."""
        return self._entries.get(normalize_language(lang, where="lexicon language"), ())

    def _pattern(self, lang: str) -> regex.Pattern | None:
        if lang not in self._patterns:
            self._patterns[lang] = _compile(self._entries.get(lang, ()))
        return self._patterns[lang]

    def hits(self, text: str, lang: str) -> list[str]:
        """Return the distinct entries of ``lang`` found in ``text``, in order of first occurrence."""
        code = normalize_language(lang, where="lexicon language")
        pat = self._pattern(code)
        if pat is None:
            return []
        found = (m.group(0) for m in pat.finditer(normalize(text), overlapped=True))
        return list(dict.fromkeys(found))

    def count(self, text: str, lang: str) -> int:
        """Return the number of matches (with repeats) of ``lang`` entries in ``text``."""
        pat = self._pattern(normalize_language(lang, where="lexicon language"))
        return 0 if pat is None else sum(1 for _ in pat.finditer(normalize(text), overlapped=True))

    def is_toxic_token(self, token: str, lang: str | None = None) -> bool:
        """Return whether a vocabulary token is a bad word of ``lang`` (any language when ``None``)."""
        t = token
        for marker in _TOKEN_MARKERS:
            t = t.replace(marker, " ")
        t = normalize(t)
        if not t:
            return False
        langs = [normalize_language(lang, where="lexicon language")] if lang else list(self._entries)
        for code in langs:
            for e in self._entries.get(code, ()):
                if t == e:
                    return True
                if " " in e:
                    continue
                if _is_cjk_entry(e):
                    if len(e) >= MIN_TOKEN_SUBSTRING_CJK and e in t:
                        return True
                elif len(e) >= MIN_TOKEN_SUBSTRING and e in t:
                    return True
        return False


@lru_cache(maxsize=4)
def default_lexicon(root: str | None = None) -> Lexicon:
    """Return the (cached) LDNOOBW lexicon of the data root."""
    return Lexicon.from_root(root)


def toxic_hits(text: str, lang: str, *, lexicon: Lexicon | None = None) -> list[str]:
    """Return the distinct bad-word entries of ``lang`` found in ``text`` (default: LDNOOBW)."""
    return (lexicon or default_lexicon()).hits(text, lang)


def is_toxic_token(token: str, lang: str | None = None, *, lexicon: Lexicon | None = None) -> bool:
    """Return whether a vocabulary-projection token counts as a bad word (see module rules)."""
    return (lexicon or default_lexicon()).is_toxic_token(token, lang)


__all__ = ["Lexicon", "default_lexicon", "toxic_hits", "is_toxic_token", "normalize"]
