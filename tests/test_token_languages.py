"""Token languages measured on data, checked on tokens whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from interp.crosslingual.token_languages import UNDETERMINED, count_token_languages, token_languages_from_data


def _one(tok, text: str) -> int:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def test_distribution_is_frequency_per_language_with_equal_priors(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    texts = {"en": ["the quick brown fox"] * 6 + ["what the hell"] * 2,
             "de": ["Ich will nach Hause"] * 4 + ["the quick brown fox"] * 1,
             "fr": ["Je veux aller à la maison"] * 5}
    tl = count_token_languages(tok, texts, min_count=3)
    # Independent computation: count with the bare tokenizer, divide by each language's token total.
    ids = {lang: [t for x in v for t in tok(x, add_special_tokens=False)["input_ids"]] for lang, v in texts.items()}
    fox = tok("the quick brown fox", add_special_tokens=False)["input_ids"][-2]  # the piece "fo": only in "fox"
    rate = {lang: ids[lang].count(fox) / len(ids[lang]) for lang in texts}
    want = {lang: r / sum(rate.values()) for lang, r in rate.items() if r > 0}
    got = tl.distribution(fox)
    assert got == pytest.approx(want) and set(got) == {"en", "de"}
    # Equal priors: ten times more German text of the same kind leaves P(lang | token) unchanged.
    more = count_token_languages(tok, {**texts, "de": texts["de"] * 10}, min_count=3)
    assert more.distribution(fox) == pytest.approx(got)
    ich = tok("Ich will nach Hause", add_special_tokens=False)["input_ids"][0]
    assert tl.distribution(ich) == pytest.approx({"de": 1.0}) and tl.lang(ich) == "de"
    # Too little evidence: a token seen twice (< min_count 3) is undetermined.
    hell = tok("what the hell", add_special_tokens=False)["input_ids"][-2]  # " he": only in "what the hell"
    assert tl.evidence(hell) == 2 and tl.distribution(hell) == {} and tl.lang(hell) == UNDETERMINED
    assert tl.lang(tok.pad_token_id) == UNDETERMINED  # never seen


def test_known_tokens_on_the_data_root(data_root) -> None:
    """English " the" is English; " de" is spread over the Romance languages and Dutch, not
    given to one; Cyrillic is Russian, kana Japanese."""
    from interp.model.loading import load_model
    from interp.model.tokenization import token_rule

    tok = token_rule(load_model("default")).tokenizer
    langs = ["en", "de", "es", "fr", "it", "pt", "nl", "ru", "ja"]
    tl = token_languages_from_data(tok, data_root, langs)
    assert tl.meta["n_tokens"]["en"] > 1000
    assert tl.lang(_one(tok, " the")) == "en"
    d = tl.distribution(_one(tok, " de"))
    assert tl.lang(_one(tok, " de")) == UNDETERMINED and d.get("en", 0) < 0.05
    assert sum(d.get(l, 0) for l in ("es", "fr", "pt", "nl", "it")) > 0.8
    for text, lang in (("и", "ru"), ("の", "ja")):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            assert tl.lang(ids[0]) == lang, text


def test_value_mass_uses_measured_languages(tiny_tokenizer) -> None:
    """A vector promoting a token measured as half German, half English gives each 0.5/k."""
    from interp.neurons.vocab import project_to_vocab
    from tiny_models import fox_bridge

    tok = tiny_tokenizer
    bridge, fox = fox_bridge(tok)  # value vector (1, 0) = the unembedding column of "fox": it ranks first
    texts = {"en": ["the quick brown fox"] * 5, "de": ["the quick brown fox"] * 5, "fr": ["Je veux"] * 5}
    tl = count_token_languages(tok, texts)
    proj = project_to_vocab(bridge, [(1, 0)], k=1, lexicons={}, token_languages=tl)
    assert int(proj.table["token_id"].iloc[0]) == fox
    mass = proj.language_mass.set_index("lang")["value_mass"]
    assert mass["en"] == pytest.approx(0.5) and mass["de"] == pytest.approx(0.5) and mass["fr"] == 0
    assert "measured" in proj.meta["token_languages"]
    old = project_to_vocab(bridge, [(1, 0)], k=1, lexicons={})  # script tags: Latin -> 11-way split
    assert old.language_mass.set_index("lang")["value_mass"]["en"] == pytest.approx(1 / 11)
    assert np.isclose(mass.sum(), 1.0)
