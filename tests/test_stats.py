"""interp.crosslingual.stats.correlate against scipy on known inputs, and its bad-input errors."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from interp.crosslingual.stats import CorrelationInputError, correlate, correlation_bootstrap_ci, permutation_pvalue

LANGS = ["ar", "cs", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "nl", "pl", "pt", "ru", "sv", "zh"]


def _tables(seed: int = 1, langs: list[str] = LANGS) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    retr = rng.uniform(0.1, 0.9, len(langs))
    drop = -60 * retr + rng.normal(0, 8, len(langs))  # planted negative relation
    signals = pd.DataFrame({"lang": langs, "retrieval_acc": retr, "key_ratio": rng.normal(size=len(langs))})
    drops = pd.DataFrame({"lang": langs, "emt_change_pct": drop, "toxprob_change": drop / 100 + rng.normal(0, .05, len(langs))})
    return signals, drops


def test_matches_scipy_pearson_and_spearman() -> None:
    signals, drops = _tables()
    out = correlate(signals, drops, n_boot=300, n_perm=300)
    assert len(out) == 4 and set(out["signal"]) == {"retrieval_acc", "key_ratio"}
    row = out[(out.signal == "retrieval_acc") & (out.outcome == "emt_change_pct")].iloc[0]
    keep = [lang != "en" for lang in LANGS]
    x = signals["retrieval_acc"][keep].to_numpy()
    y = drops["emt_change_pct"][keep].to_numpy()
    assert row.n == 16 and "en" not in row.languages.split(",")
    r, p = sps.pearsonr(x, y)
    rho, sp = sps.spearmanr(x, y)
    assert row.pearson_r == pytest.approx(r, abs=1e-12) and row.pearson_p == pytest.approx(p, rel=1e-9)
    assert row.spearman_rho == pytest.approx(rho, abs=1e-12) and row.spearman_p == pytest.approx(sp, rel=1e-9)
    assert row.pearson_r < -0.5  # the planted relation is found
    assert row.boot_lo <= row.pearson_r <= row.boot_hi
    assert row.spearman_boot_lo <= row.spearman_rho <= row.spearman_boot_hi
    assert row.warning == ""


def test_permutation_p_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = 0.4 * x + rng.normal(size=12)
    ours = permutation_pvalue(x, y, n_perm=5000, rng=np.random.default_rng(0))
    ref = sps.permutation_test((y,), lambda yy: sps.pearsonr(x, yy).statistic, permutation_type="pairings",
                               n_resamples=5000, alternative="two-sided", rng=np.random.default_rng(0)).pvalue
    # Independent Monte Carlo estimates of the same p: a few standard errors apart at most.
    assert abs(ours - ref) < 4 * np.sqrt(ref * (1 - ref) / 5000) + 0.005


def test_permutation_p_exact_when_all_pairings_fit() -> None:
    x = np.array([1.0, 2.5, 3.0, 4.2, 5.1, 7.0])
    y = np.array([2.0, 1.0, 4.0, 3.5, 6.0, 5.0])
    r_obs = abs(np.corrcoef(x, y)[0, 1])
    brute = np.mean([abs(np.corrcoef(x, y[list(p)])[0, 1]) >= r_obs - 1e-12 for p in itertools.permutations(range(6))])
    assert permutation_pvalue(x, y, n_perm=5000, rng=np.random.default_rng(0)) == pytest.approx(brute, abs=1e-12)


def test_correlation_bootstrap_ci_close_to_scipy_bootstrap() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=16)
    y = 0.6 * x + rng.normal(size=16)
    lo, hi = correlation_bootstrap_ci(x, y, n_boot=4000, rng=np.random.default_rng(0))
    ref = sps.bootstrap((x, y), lambda a, b, axis=-1: _pearson(a, b, axis), paired=True, vectorized=True,
                        n_resamples=4000, method="percentile", rng=np.random.default_rng(1)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.05) and hi == pytest.approx(ref.high, abs=0.05)
    assert lo < np.corrcoef(x, y)[0, 1] < hi


def _pearson(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


def test_deterministic_with_seed_and_seed_matters() -> None:
    signals, drops = _tables()
    a = correlate(signals, drops, n_boot=200, n_perm=200, seed=7)
    b = correlate(signals, drops, n_boot=200, n_perm=200, seed=7)
    c = correlate(signals, drops, n_boot=200, n_perm=200, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["boot_lo"], c["boot_lo"])


def test_small_n_warns() -> None:
    signals, drops = _tables(langs=["en", "de", "fr", "ja", "zh"])
    out = correlate(signals, drops, n_boot=100, n_perm=100)
    assert (out["n"] == 4).all() and out["warning"].str.contains("small sample: n=4").all()


def test_too_few_languages() -> None:
    signals, drops = _tables(langs=["en", "de", "fr"])
    with pytest.raises(CorrelationInputError, match="only 2 language.*at least 3"):
        correlate(signals, drops)


def test_mismatched_languages_named() -> None:
    signals, drops = _tables()
    with pytest.raises(CorrelationInputError, match=r"drops lacks \['ko'\]"):
        correlate(signals, drops[drops.lang != "ko"])
    out = correlate(signals, drops[drops.lang != "ko"], how="inner", n_boot=50, n_perm=50)
    assert (out["n"] == 15).all()


def test_nan_score_named() -> None:
    signals, drops = _tables()
    signals.loc[signals.lang == "hi", "key_ratio"] = np.nan
    with pytest.raises(CorrelationInputError, match=r"signals: column 'key_ratio' is NaN.*\['hi'\]"):
        correlate(signals, drops)


def test_language_codes_normalised_and_unknown_rejected() -> None:
    signals, drops = _tables()
    signals["lang"] = signals["lang"].replace({"zh": "ZH-Hans"})
    assert (correlate(signals, drops, n_boot=20, n_perm=20)["n"] == 16).all()
    signals["lang"] = signals["lang"].replace({"ZH-Hans": "xx"})
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        correlate(signals, drops)


def test_macro_average_row_of_compare_tables_is_skipped() -> None:
    signals, drops = _tables()
    with_all = pd.concat([drops, pd.DataFrame([{"lang": "all", "emt_change_pct": -50.0, "toxprob_change": -0.4}])])
    pd.testing.assert_frame_equal(correlate(signals, with_all, n_boot=30, n_perm=30),
                                  correlate(signals, drops, n_boot=30, n_perm=30))


def test_constant_signal_gives_nan_with_warning() -> None:
    signals, drops = _tables()
    signals["flat"] = 1.0
    out = correlate(signals, drops, signal_columns=["flat"], n_boot=20, n_perm=20)
    assert out["pearson_r"].isna().all() and out["warning"].str.contains("constant signal flat").all()


def test_default_outcome_is_the_papers_reduction_with_the_papers_sign() -> None:
    """Languages that retrieve better lose more toxicity: r must come out positive, as the paper's 0.73."""
    from detox_train.evaluate.metrics import METRIC_COLUMNS, compare_tables
    from interp.app.stages.correlation import correlate_available

    rng = np.random.default_rng(3)
    langs = [lang for lang in LANGS]
    retr = rng.uniform(0.1, 0.9, len(langs))
    before = pd.DataFrame([{c: 0.5 for c in METRIC_COLUMNS} | {"lang": lang} for lang in langs])
    after = before.copy()
    after["emt"] = 0.5 * (1 - 0.8 * retr) + rng.normal(0, 0.01, len(langs))  # better retrieval, larger drop
    cmp = compare_tables(before, after)
    signals = pd.DataFrame({"lang": langs, "retrieval_acc": retr})
    out = correlate_available(signals, cmp, n_boot=50, n_perm=50)
    assert list(out["outcome"].unique())[0] == "emt_reduction_pct"
    row = out[(out.signal == "retrieval_acc") & (out.outcome == "emt_reduction_pct")].iloc[0]
    keep = [lang != "en" for lang in langs]
    want = sps.pearsonr(retr[keep], 100 * (0.5 - after["emt"].to_numpy()[keep]) / 0.5).statistic
    assert row.pearson_r == pytest.approx(want, abs=1e-9) and row.pearson_r > 0.9
    assert correlate(signals, cmp.drop(columns=["toxprob_reduction"]), n_boot=20, n_perm=20,
                     how="inner")["outcome"].iloc[0] == "emt_reduction_pct"
