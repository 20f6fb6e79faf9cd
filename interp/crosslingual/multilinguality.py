"""Dual multilinguality per language: one table, one column per signal (paper stage 6, extended).

Signals come from other stages as plain tables keyed by ``lang``:
value side (toxic neurons' top-k token mass in language X, lexicon hits), key side (toxic
neuron activation on X prompts relative to English, before DPO), probe-transfer AUC on X, and
bilingual retrieval accuracy (en, X), and the mean paired cosine (en, X), the number the reference
code printed as "retrieval acc" (a named alternative, never under that name).
"""
from __future__ import annotations

from typing import Literal

import pandas as pd

from interp.data.languages import normalize_language
from interp.crosslingual.stats import CorrelationInputError, align_languages, lang_indexed

SIGNAL_COLUMNS: tuple[str, ...] = ("value_mass", "lexicon_hits", "key_ratio", "probe_auc", "retrieval_acc",
                                   "mean_paired_cosine")


class MultilingualityInputError(CorrelationInputError):
    """An input table of :func:`dual_multilinguality` is malformed or the language sets differ."""


def _prepare(df: pd.DataFrame, name: str, columns: dict[str, str], optional: dict[str, str]) -> pd.DataFrame:
    """Return ``df`` indexed by canonical language with its columns renamed to signal names."""
    indexed = lang_indexed(df, name, required=list(columns), error=MultilingualityInputError)
    keep = {**columns, **{k: v for k, v in optional.items() if k in indexed.columns}}
    return indexed[list(keep)].rename(columns=keep).apply(pd.to_numeric, errors="coerce")


def dual_multilinguality(*, value_mass: pd.DataFrame | None = None, key_ratio: pd.DataFrame | None = None,
                         probe_auc: pd.DataFrame | None = None, retrieval: pd.DataFrame | None = None,
                         how: Literal["exact", "inner"] = "exact", pivot: str = "en") -> pd.DataFrame:
    """Return one row per language and one column per signal supplied.

    Inputs (each optional; a missing one omits its column): ``value_mass`` (lang, value_mass
    [, lexicon_hits]), ``key_ratio`` (lang, key_ratio), ``probe_auc`` (lang, auc),
    ``retrieval`` (lang, retrieval_acc [, mean_paired_cosine]). The language sets must match; the error names the
    languages missing from each table. ``how="inner"`` keeps only the shared languages.
    ``retrieval`` may omit the ``pivot`` (retrieval is measured *against* it, as in
    :func:`interp.crosslingual.retrieval.bilingual_retrieval`): its retrieval signals are then NaN.
    """
    tables: dict[str, pd.DataFrame] = {}
    if value_mass is not None:
        tables["value_mass"] = _prepare(value_mass, "value_mass", {"value_mass": "value_mass"},
                                        {"lexicon_hits": "lexicon_hits"})
    if key_ratio is not None:
        tables["key_ratio"] = _prepare(key_ratio, "key_ratio", {"key_ratio": "key_ratio"}, {})
    if probe_auc is not None:
        tables["probe_auc"] = _prepare(probe_auc, "probe_auc", {"auc": "probe_auc"}, {})
    if retrieval is not None:
        t = _prepare(retrieval, "retrieval", {"retrieval_acc": "retrieval_acc"},
                     {"mean_paired_cosine": "mean_paired_cosine"})
        pivot = normalize_language(pivot, where="dual_multilinguality(pivot=)")
        others_have_pivot = any(pivot in x.index for x in tables.values())
        if pivot not in t.index and others_have_pivot:
            t = pd.concat([t, pd.DataFrame({c: [float("nan")] for c in t.columns}, index=pd.Index([pivot], name="lang"))])
        tables["retrieval"] = t
    if not tables:
        raise MultilingualityInputError("dual_multilinguality: no signal table given (value_mass, key_ratio, "
                                        "probe_auc, retrieval)")
    try:
        langs = align_languages(tables, how=how)
    except CorrelationInputError as e:
        raise MultilingualityInputError(str(e)) from None
    out = pd.concat([t.loc[langs] for t in tables.values()], axis=1)
    cols = [c for c in SIGNAL_COLUMNS if c in out.columns]
    return out[cols].reset_index()


def key_ratio_from_activations(summary: pd.DataFrame, *, model: str | None = "base", pivot: str = "en",
                               value: str = "mean") -> pd.DataFrame:
    """Return (lang, key_ratio): each language's mean toxic-neuron activation divided by the pivot's.

    ``summary`` is the key-activation table (model, lang, mean, ...); ``model`` picks the rows of
    the pre-DPO model (None when the table has no ``model`` column). A pivot activation of 0 has
    no meaningful ratio and raises.
    """
    df = summary
    if model is not None:
        if "model" not in df.columns:
            raise MultilingualityInputError(f"key activations: no 'model' column to select {model!r}; pass model=None")
        df = df[df["model"] == model]
        if df.empty:
            raise MultilingualityInputError(f"key activations: no rows with model == {model!r} "
                                            f"(models present: {sorted(summary['model'].unique())})")
    t = _prepare(df, "key activations", {value: "v"}, {})
    pivot = normalize_language(pivot, where="key_ratio_from_activations(pivot=)")
    if pivot not in t.index:
        raise MultilingualityInputError(f"key activations: pivot language {pivot!r} missing (have {list(t.index)})")
    base = float(t.loc[pivot, "v"])
    if base == 0 or base != base:
        raise MultilingualityInputError(f"key activations: pivot {pivot!r} mean activation is {base}; a ratio to it "
                                        "is undefined")
    return pd.DataFrame({"lang": t.index, "key_ratio": (t["v"] / base).to_numpy()})


__all__ = ["dual_multilinguality", "key_ratio_from_activations", "MultilingualityInputError", "SIGNAL_COLUMNS"]
