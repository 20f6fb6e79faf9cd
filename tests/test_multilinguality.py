"""interp.crosslingual.multilinguality: one row per language, one column per signal; mismatches are named."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interp import dual_multilinguality
from interp.crosslingual.multilinguality import MultilingualityInputError, key_ratio_from_activations

LANGS = ["en", "de", "ja", "zh", "ar"]


def _inputs() -> dict[str, pd.DataFrame]:
    return {
        "value_mass": pd.DataFrame({"lang": LANGS, "value_mass": [.5, .2, .1, .1, .05], "lexicon_hits": [9, 4, 2, 2, 1]}),
        "key_ratio": pd.DataFrame({"lang": LANGS[::-1], "key_ratio": [.1, .6, .7, .8, 1.0]}),
        "probe_auc": pd.DataFrame({"lang": LANGS, "auc": [.9, .8, .7, .65, .6]}),
        "retrieval": pd.DataFrame({"lang": LANGS, "retrieval_acc": [np.nan, .7, .4, .5, .2], "extra": 1}),
    }


def test_joins_by_language_not_position() -> None:
    out = dual_multilinguality(**_inputs())
    assert list(out.columns) == ["lang", "value_mass", "lexicon_hits", "key_ratio", "probe_auc", "retrieval_acc"]
    assert list(out["lang"]) == LANGS
    row = out.set_index("lang").loc["ar"]
    assert row["key_ratio"] == 0.1 and row["probe_auc"] == 0.6 and row["lexicon_hits"] == 1
    assert out.set_index("lang").loc["en", "key_ratio"] == 1.0


def test_retrieval_may_omit_the_pivot() -> None:
    i = _inputs()
    i["retrieval"] = i["retrieval"][i["retrieval"].lang != "en"]
    out = dual_multilinguality(**i).set_index("lang")
    assert np.isnan(out.loc["en", "retrieval_acc"]) and out.loc["de", "retrieval_acc"] == 0.7
    i["retrieval"] = i["retrieval"][i["retrieval"].lang != "de"]
    with pytest.raises(MultilingualityInputError, match=r"retrieval lacks \['de'\]"):
        dual_multilinguality(**i)


def test_optional_inputs_omit_columns() -> None:
    i = _inputs()
    out = dual_multilinguality(key_ratio=i["key_ratio"], retrieval=i["retrieval"])
    assert list(out.columns) == ["lang", "key_ratio", "retrieval_acc"]
    with pytest.raises(MultilingualityInputError, match="no signal table"):
        dual_multilinguality()


def test_mismatched_languages_named_per_table() -> None:
    i = _inputs()
    i["probe_auc"] = i["probe_auc"][i["probe_auc"].lang != "ja"]
    i["retrieval"] = pd.concat([i["retrieval"], pd.DataFrame({"lang": ["ko"], "retrieval_acc": [.3]})])
    with pytest.raises(MultilingualityInputError, match=r"probe_auc lacks \['ja', 'ko'\]") as e:
        dual_multilinguality(**i)
    assert "value_mass lacks ['ko']" in str(e.value)
    out = dual_multilinguality(**i, how="inner")
    assert list(out["lang"]) == ["en", "de", "zh", "ar"]


def test_bad_columns_and_duplicates() -> None:
    i = _inputs()
    with pytest.raises(MultilingualityInputError, match=r"probe_auc: missing column\(s\) \['auc'\]"):
        dual_multilinguality(probe_auc=i["probe_auc"].rename(columns={"auc": "roc"}))
    dup = pd.concat([i["key_ratio"], i["key_ratio"].head(1)])
    with pytest.raises(MultilingualityInputError, match=r"languages \['ar'\] appear more than once"):
        dual_multilinguality(key_ratio=dup)


def test_key_ratio_from_activations() -> None:
    summary = pd.DataFrame({"model": ["base"] * 3 + ["dpo"] * 3, "lang": ["en", "de", "ar"] * 2,
                            "mean": [0.104, 0.0814, 0.0128, -0.0047, -0.0027, -0.0313]})
    kr = key_ratio_from_activations(summary).set_index("lang")["key_ratio"]
    assert kr["en"] == 1.0 and kr["de"] == pytest.approx(0.0814 / 0.104) and kr["ar"] == pytest.approx(0.0128 / 0.104)
    with pytest.raises(MultilingualityInputError, match="no rows with model == 'pre'"):
        key_ratio_from_activations(summary, model="pre")
    zero = summary.assign(mean=0.0)
    with pytest.raises(MultilingualityInputError, match="undefined"):
        key_ratio_from_activations(zero)
