"""Script and language tags for vocabulary tokens (subword pieces), from Unicode ranges.

A token's script is the majority script of its letters (Unicode block ranges, with
``unicodedata`` names as the fallback). Scripts used by one of the 17 languages name it
(Cyrillic -> ru, Hangul -> ko, kana -> ja, Arabic -> ar, Devanagari -> hi); Han is ``zh`` unless
kana is present. Latin pieces are ambiguous between 11 languages: letters used by few of them
(``ř`` -> cs, ``ß`` -> de, ``ñ`` -> es, ...) narrow the set, and lexicon hits (``interp.data.lexicon``)
name the language outright. Anything left is ``und`` (undetermined): a language-ID library does
not help here, since the pieces are a few characters long, out of context.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from interp.data.languages import LANGUAGES

# (first, last, script) code-point ranges of the scripts the 17 languages use.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "Latin"), (0x0061, 0x007A, "Latin"), (0x00C0, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x0400, 0x052F, "Cyrillic"), (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"), (0x0E00, 0x0E7F, "Thai"),
    (0x1100, 0x11FF, "Hangul"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3040, 0x309F, "Hiragana"), (0x30A0, 0x30FF, "Katakana"), (0xFF66, 0xFF9F, "Katakana"),
    (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"), (0x20000, 0x2FA1F, "Han"),
)

SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "Latin": ("cs", "de", "en", "es", "fr", "id", "it", "nl", "pl", "pt", "sv"),
    "Cyrillic": ("ru",), "Arabic": ("ar",), "Devanagari": ("hi",), "Hangul": ("ko",),
    "Hiragana": ("ja",), "Katakana": ("ja",), "Han": ("zh", "ja"),
}

# Latin letters that only some of the 11 Latin-script languages use (lower case).
_LATIN_HINTS: dict[str, tuple[str, ...]] = {
    "ř": ("cs",), "ě": ("cs",), "ů": ("cs",), "č": ("cs",), "š": ("cs",), "ž": ("cs",), "ť": ("cs",),
    "ď": ("cs",), "ň": ("cs",),
    "ß": ("de",), "ä": ("de", "sv"), "ö": ("de", "sv"), "ü": ("de",), "å": ("sv",),
    "ñ": ("es",), "¿": ("es",), "¡": ("es",),
    "ç": ("fr", "pt"), "œ": ("fr",), "ê": ("fr", "pt"), "è": ("fr", "it"), "ë": ("fr", "nl"), "î": ("fr",),
    "ï": ("fr", "nl"), "û": ("fr",), "ù": ("fr", "it"), "â": ("fr", "pt"),
    "ą": ("pl",), "ę": ("pl",), "ł": ("pl",), "ś": ("pl",), "ź": ("pl",), "ż": ("pl",), "ń": ("pl",),
    "ã": ("pt",), "õ": ("pt",), "ì": ("it",), "ò": ("it",),
}

UNDETERMINED = "und"


def char_script(ch: str) -> str | None:
    """Return the script of one character, or None for digits, punctuation, spaces and marks."""
    cp = ord(ch)
    for lo, hi, script in _RANGES:
        if lo <= cp <= hi:
            return script if unicodedata.category(ch)[0] == "L" else None
    if unicodedata.category(ch)[0] != "L":
        return None
    name = unicodedata.name(ch, "")
    head = name.split(" ")[0] if name else ""
    return {"CJK": "Han", "HANGUL": "Hangul", "HIRAGANA": "Hiragana", "KATAKANA": "Katakana",
            "HALFWIDTH": "Katakana"}.get(head, head.title() or "Other")


def token_script(text: str) -> str:
    """Return the majority script of ``text``'s letters (``Common`` when it has none)."""
    counts = Counter(s for s in map(char_script, text) if s)
    if not counts:
        return "Common"
    return counts.most_common(1)[0][0]


@dataclass(frozen=True)
class TokenTag:
    """Script and candidate languages of one token; ``lang`` is set when there is exactly one."""

    script: str
    languages: tuple[str, ...]
    toxic_languages: tuple[str, ...]

    @property
    def lang(self) -> str:
        """Return the one language, or ``und`` when ambiguous or unknown."""
        return self.languages[0] if len(self.languages) == 1 else UNDETERMINED


def tag_token(text: str, lexicon: Any = None) -> TokenTag:
    """Return the script/language tag of a decoded token; ``lexicon`` is an ``interp.data.lexicon.Lexicon``."""
    script = token_script(text)
    letters = [s for s in map(char_script, text) if s]
    if "Han" in letters and ("Hiragana" in letters or "Katakana" in letters):
        candidates: tuple[str, ...] = ("ja",)
    elif script == "Han":
        candidates = ("zh",)  # kanji-only pieces are far more often Chinese in multilingual vocabularies
    else:
        candidates = SCRIPT_LANGUAGES.get(script, ())
    toxic: tuple[str, ...] = ()
    if lexicon is not None and script != "Common":
        toxic = tuple(l for l in lexicon.languages if lexicon.is_toxic_token(text, l))
        toxic = tuple(l for l in toxic if l in SCRIPT_LANGUAGES.get(script, ()) or l in candidates) or toxic
    if toxic:
        candidates = toxic
    elif script == "Latin":
        hinted = [set(_LATIN_HINTS[c]) for c in text.lower() if c in _LATIN_HINTS]
        if hinted:
            common = set.intersection(*hinted)
            candidates = tuple(sorted(common)) if common else tuple(sorted(set.union(*hinted)))
    return TokenTag(script=script, languages=tuple(l for l in candidates if l in LANGUAGES), toxic_languages=toxic)


__all__ = ["char_script", "token_script", "tag_token", "TokenTag", "SCRIPT_LANGUAGES", "UNDETERMINED"]
