"""One language-code scheme for the whole project: lower-case ISO 639-1 (``zh`` for Chinese).

RTP-LX writes ``ZH-Hans``/``AR``, translated-200 writes ``zh``, gettext writes ``zh_CN``/``pt_BR``;
:func:`normalize_language` maps all of them onto the same code.
"""
from __future__ import annotations

from typing import Iterable

#: The paper's 17 languages, in the paper's order (alphabetical).
LANGUAGES: tuple[str, ...] = (
    "ar", "cs", "de", "en", "es", "fr", "hi", "id", "it", "ja",
    "ko", "nl", "pl", "pt", "ru", "sv", "zh",
)

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "sv": "Swedish", "zh": "Chinese",
}

# Script/region variants that collapse onto one code.
_ALIASES: dict[str, str] = {
    "zh-hans": "zh", "zh_hans": "zh", "zh-cn": "zh", "zh_cn": "zh", "zh-sg": "zh",
    "pt-br": "pt", "pt_br": "pt", "pt-pt": "pt", "pt_pt": "pt",
    "in": "id",  # legacy ISO code for Indonesian
}

# Codes used by external services, where they differ from ours.
PERSPECTIVE_CODES: dict[str, str] = {"zh": "zh"}


class UnknownLanguageError(ValueError):
    """Raised for a language code outside the supported set."""


def normalize_language(code: str, *, where: str = "") -> str:
    """Return the canonical code for ``code`` (``"ZH-Hans"`` -> ``"zh"``).

    ``where`` names the file/field the code came from, so the error can point at it.
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"{where + ': ' if where else ''}empty language code")
    key = code.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        base = key.replace("_", "-").split("-")[0]
        key = _ALIASES.get(base, base)
    if key not in LANGUAGES:
        prefix = f"{where}: " if where else ""
        raise UnknownLanguageError(
            f"{prefix}unknown language {code!r}; supported codes are {', '.join(LANGUAGES)} "
            "(variants such as ZH-Hans, zh_CN or pt_BR are accepted)"
        )
    return key


def normalize_languages(codes: Iterable[str] | None, *, where: str = "") -> list[str]:
    """Return canonical codes for ``codes`` (all 17 when ``None``), de-duplicated, order kept."""
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
