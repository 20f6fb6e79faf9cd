"""One language-code scheme for the whole project, and the language registry.

Codes are BCP-47 tags built on ISO 639-1: lower-case ``en``, ``sw``, ``he``; a script subtag only
where it names a distinct written language (``zh-Hant``; Simplified Chinese is plain ``zh``).
RTP-LX writes ``ZH-Hans``/``AR``, translated-200 writes ``zh``, gettext writes ``zh_CN``/``pt_BR``;
:func:`normalize_language` maps all of them onto the same code. Any ISO 639-1 language can be
named (a researcher extending the study to RTP-LX's later locales: sw, th, he, tr, uk, da, fi,
hu, no, zh-Hant, ...); :data:`LANGUAGES`, the paper's 17, is the default.

Per-language facts (script, whether words are space-separated, the Perspective API's code) live
in :data:`REGISTRY`. They may be missing for a language: :func:`language_info` then says so
(``None``) and callers report the gap instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from interp.data.iso639 import ISO_639_1

#: The paper's 17 languages, in the paper's order (alphabetical).
LANGUAGES: tuple[str, ...] = (
    "ar", "cs", "de", "en", "es", "fr", "hi", "id", "it", "ja",
    "ko", "nl", "pl", "pt", "ru", "sv", "zh",
)


@dataclass(frozen=True)
class Language:
    """What the project knows about one language; ``None`` marks a fact it does not have."""

    code: str
    name: str
    script: str | None = None          # ISO 15924 (Latn, Cyrl, Arab, Hans, Hant, Jpan, ...)
    spaces: bool | None = None         # words separated by spaces (n-gram units are words, else characters)
    perspective: str | None = None     # the Perspective API's language code, None when it has none

    @property
    def paper(self) -> bool:
        """Return whether the language is one of the paper's 17."""
        return self.code in LANGUAGES


def _lang(code: str, script: str, spaces: bool = True, perspective: str | None = None, name: str | None = None
          ) -> Language:
    return Language(code, name or ISO_639_1[code.split("-")[0]].split(",")[0], script, spaces, perspective)


#: Known facts. Perspective's TOXICITY languages are the paper's 17 (zh-Hans sent as "zh").
REGISTRY: dict[str, Language] = {x.code: x for x in (
    _lang("ar", "Arab", perspective="ar"), _lang("cs", "Latn", perspective="cs"),
    _lang("de", "Latn", perspective="de"), _lang("en", "Latn", perspective="en"),
    _lang("es", "Latn", perspective="es"), _lang("fr", "Latn", perspective="fr"),
    _lang("hi", "Deva", perspective="hi"), _lang("id", "Latn", perspective="id"),
    _lang("it", "Latn", perspective="it"), _lang("ja", "Jpan", False, "ja"),
    _lang("ko", "Kore", perspective="ko"), _lang("nl", "Latn", perspective="nl"),
    _lang("pl", "Latn", perspective="pl"), _lang("pt", "Latn", perspective="pt"),
    _lang("ru", "Cyrl", perspective="ru"), _lang("sv", "Latn", perspective="sv"),
    _lang("zh", "Hans", False, "zh", name="Chinese"),
    # RTP-LX's later locales and other common ones (no Perspective TOXICITY model documented).
    _lang("zh-Hant", "Hant", False, name="Chinese (Traditional)"), _lang("th", "Thai", False),
    _lang("he", "Hebr"), _lang("sw", "Latn"), _lang("tr", "Latn"), _lang("uk", "Cyrl"), _lang("da", "Latn"),
    _lang("fi", "Latn"), _lang("hu", "Latn"), _lang("no", "Latn"), _lang("vi", "Latn"), _lang("el", "Grek"),
    _lang("bg", "Cyrl"), _lang("ro", "Latn"), _lang("sk", "Latn"), _lang("sl", "Latn"), _lang("hr", "Latn"),
    _lang("sr", "Cyrl"), _lang("bs", "Latn"), _lang("et", "Latn"), _lang("lv", "Latn"), _lang("lt", "Latn"),
    _lang("ca", "Latn"), _lang("fa", "Arab"), _lang("ur", "Arab"), _lang("bn", "Beng"), _lang("ta", "Taml"),
    _lang("te", "Telu"), _lang("ms", "Latn"), _lang("tl", "Latn"), _lang("my", "Mymr", False),
    _lang("km", "Khmr", False), _lang("lo", "Laoo", False),
)}

LANGUAGE_NAMES: dict[str, str] = {c: REGISTRY[c].name for c in LANGUAGES}

# Script/region variants that collapse onto one code.
_ALIASES: dict[str, str] = {
    "zh-hans": "zh", "zh_hans": "zh", "zh-cn": "zh", "zh_cn": "zh", "zh-sg": "zh",
    "zh-hant": "zh-Hant", "zh-tw": "zh-Hant", "zh-hk": "zh-Hant", "zh-mo": "zh-Hant",
    "pt-br": "pt", "pt_br": "pt", "pt-pt": "pt", "pt_pt": "pt",
    "in": "id",  # legacy ISO code for Indonesian
    "iw": "he", "ji": "yi", "jw": "jv",  # legacy ISO codes
    "nb": "no", "nn": "no",  # Norwegian Bokmål / Nynorsk -> Norwegian (as RTP-LX names it)
    "fil": "tl",  # Filipino
}

# Codes used by external services, where they differ from ours.
PERSPECTIVE_CODES: dict[str, str] = {c: x.perspective for c, x in REGISTRY.items() if x.perspective}


class UnknownLanguageError(ValueError):
    """Raised for a language code outside the supported set."""


def normalize_language(code: str, *, where: str = "") -> str:
    """Return the canonical code for ``code`` (``"ZH-Hans"`` -> ``"zh"``, ``"SW"`` -> ``"sw"``).

    Any ISO 639-1 language is accepted, with region subtags dropped (``pt_BR`` -> ``pt``) and a
    script subtag kept only where the registry names a distinct language (``zh-Hant``).
    ``where`` names the file/field the code came from, so the error can point at it.
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"{where + ': ' if where else ''}empty language code")
    key = code.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in REGISTRY:
        return key
    parts = key.split("-")
    if len(parts) > 1:  # language-Script(-Region): keep a registered script variant
        tag = f"{parts[0]}-{parts[1].title()}"
        if tag in REGISTRY:
            return tag
        joined = _ALIASES.get(f"{parts[0]}-{parts[1]}")
        if joined:
            return joined
    base = _ALIASES.get(parts[0], parts[0])
    if base in REGISTRY or base in ISO_639_1:
        return base
    prefix = f"{where}: " if where else ""
    raise UnknownLanguageError(
        f"{prefix}unknown language {code!r}: not an ISO 639-1 code; the paper's are {', '.join(LANGUAGES)} "
        "(variants such as ZH-Hans, zh_CN or pt_BR are accepted, and any other ISO 639-1 code such as sw or "
        "zh-Hant)"
    )


def language_info(code: str) -> Language:
    """Return the registry entry of ``code``; a language without one gets its name and no facts."""
    c = normalize_language(code)
    if c in REGISTRY:
        return REGISTRY[c]
    return Language(c, ISO_639_1.get(c.split("-")[0], c).split(",")[0])


def language_name(code: str) -> str:
    """Return the English name of ``code``."""
    return language_info(code).name


def word_separated(code: str) -> bool:
    """Return whether words are space-separated (unknown: assumed yes)."""
    return language_info(code).spaces is not False


def normalize_languages(codes: Iterable[str] | None, *, where: str = "") -> list[str]:
    """Return canonical codes for ``codes`` (the paper's 17 when ``None``), de-duplicated, order kept."""
    if codes is None:
        return list(LANGUAGES)
    out: list[str] = []
    for c in codes:
        n = normalize_language(c, where=where)
        if n not in out:
            out.append(n)
    if not out:
        raise UnknownLanguageError(f"{where + ': ' if where else ''}empty language list")
    return out
