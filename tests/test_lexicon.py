"""Lexicon matching: word boundaries per script, CJK substrings, multiword entries, tokens."""
from __future__ import annotations

from pathlib import Path

import pytest

from interp.data.lexicon import Lexicon, is_toxic_token, toxic_hits

LEX = Lexicon({
    "en": ["ass", "Blow Job", "fuck", "s&m", "🖕"],
    "hi": ["कमीना"],
    "ar": ["كلب"],
    "ru": ["сука"],
    "zh": ["他妈的", "乳"],
    "ja": ["ホモ", "sm"],
    "ko": ["개새끼"],
})


@pytest.mark.parametrize("text, lang, expected", [
    ("what a pain in the ASS!", "en", ["ass"]),
    ("this class is about assessment and bass", "en", []),           # no match inside other words
    ("ass-hat", "en", ["ass"]),                                      # punctuation is a boundary
    ("asses", "en", []),
    ("a blow   job joke", "en", ["blow job"]),                       # multiword, any whitespace
    ("blowjob", "en", []),
    ("FUCK this", "en", ["fuck"]),
    ("motherfucker", "en", []),
    ("into s&m stuff", "en", ["s&m"]),
    ("ok 🖕🖕", "en", ["🖕"]),
    ("वह कमीना है", "hi", ["कमीना"]),
    ("कमीनापन", "hi", []),                                           # Devanagari suffix: inside a word
    ("أنت كلب", "ar", ["كلب"]),
    ("الكلب", "ar", []),
    ("ты сука", "ru", ["сука"]),
    ("Сукалина", "ru", []),
    ("你这个他妈的东西", "zh", ["他妈的"]),                              # no spaces: substring
    ("乳制品", "zh", []),                                             # single Han character needs boundaries
    ("乳 制品", "zh", ["乳"]),
    ("あいつはホモだ", "ja", ["ホモ"]),
    ("smart", "ja", []),
    ("이 개새끼가 뭐라고", "ko", ["개새끼"]),                           # Korean particles may follow
    ("새개새끼", "ko", []),                                            # but the entry must start a word
    ("nothing here", "id", []),                                       # no Indonesian list
])
def test_hits(text: str, lang: str, expected: list[str]) -> None:
    assert LEX.hits(text, lang) == expected


def test_count_and_order() -> None:
    assert LEX.hits("fuck you, ass, fuck", "en") == ["fuck", "ass"]
    assert LEX.count("fuck you, ass, fuck", "en") == 3
    assert LEX.hits("FUCK", "en-US") == ["fuck"]


@pytest.mark.parametrize("token, lang, expected", [
    ("Ġfuck", "en", True), ("fucking", "en", True), ("▁Fucker", None, True), ("ass", "en", True),
    ("class", "en", False), ("Ġassessment", "en", False), ("hello", None, False), ("", None, False),
    ("他妈的", "zh", True), ("他妈", "zh", False), ("ホモ", None, True), ("сука", "en", False),
    ("Ġсука", "ru", True), ("сукин", "ru", False), ("##fuck", "en", True), ("blow", "en", False),
])
def test_is_toxic_token(token: str, lang: str | None, expected: bool) -> None:
    assert LEX.is_toxic_token(token, lang) is expected


def test_default_lexicon_on_real_data(data_root: Path) -> None:
    assert toxic_hits("you are a fucking idiot", "en")
    assert toxic_hits("the class went to the assembly", "en") == []
    assert is_toxic_token("Ġshit", "en") and not is_toxic_token("Ġhouse", "en")
    assert toxic_hits("anything", "id") == []
    real = Lexicon.from_root(data_root)
    assert all(real.entries(lang) for lang in real.languages)
