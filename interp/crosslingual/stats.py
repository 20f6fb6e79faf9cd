"""Correlation of per-language signals with per-language toxicity drops (paper stage 6).

For each (signal, outcome) pair, over the non-English languages: Pearson and Spearman, a
percentile bootstrap 95% CI over languages for each, and two-sided permutation p-values. The
paper reports only Pearson r (mGPT 0.732); small n (17 languages at most) is why we report more.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from interp.data.languages import normalize_language

#: Outcome columns looked for in the ``drops`` table, in this order. ``emt_reduction_pct`` (100 *
#: (before - after) / before, positive when toxicity falls) is the paper's outcome; the ``*_change``
#: columns (after - before) have the opposite sign.
DEFAULT_OUTCOMES: tuple[str, ...] = ("emt_reduction_pct", "toxprob_reduction", "emt_change_pct", "toxprob_change")
#: Below this many languages a correlation row carries a warning.
SMALL_N: int = 8
#: Fewer languages than this and no correlation is computed.
MIN_N: int = 3
#: ``lang`` values of macro-average rows (``compare_tables`` appends ``all``): not languages, skipped.
AGGREGATE_ROWS: frozenset[str] = frozenset({"all", "mean", "avg", "average"})

STAT_COLUMNS: tuple[str, ...] = (
    "signal", "outcome", "n", "languages", "pearson_r", "pearson_p", "spearman_rho", "spearman_p",
    "boot_lo", "boot_hi", "spearman_boot_lo", "spearman_boot_hi", "perm_p", "spearman_perm_p", "warning",
)


class CorrelationInputError(ValueError):
    """A signals/drops table cannot be correlated (language mismatch, NaN, too few languages)."""


# ----------------------------------------------------------------------------- table checks
def lang_indexed(df: pd.DataFrame, name: str, *, required: Sequence[str] = (),
                 error: type[ValueError] | None = None) -> pd.DataFrame:
    """Return ``df`` without its ``lang`` column, indexed by canonical language code.

    Shared by every per-language table check: a non-DataFrame, a missing ``lang`` or ``required``
    column, an unknown code or a duplicated language raises ``error`` naming the table ``name``.
    """
    err = error or CorrelationInputError
    if not isinstance(df, pd.DataFrame):
        raise err(f"{name}: expected a pandas DataFrame with columns {['lang', *required]}, got {type(df).__name__}")
    missing = [c for c in ["lang", *required] if c not in df.columns]
    if missing:
        raise err(f"{name}: missing column(s) {missing} (columns are {list(df.columns)})")
    df = drop_aggregate_rows(df)
    langs = [normalize_language(str(x), where=f"{name} row {i} column 'lang'") for i, x in enumerate(df["lang"])]
    dup = sorted({lang for lang in langs if langs.count(lang) > 1})
    if dup:
        raise err(f"{name}: languages {dup} appear more than once; pass one row per language")
    out = df.drop(columns=["lang"]).copy()
    out.index = pd.Index(langs, name="lang")
    return out


def drop_aggregate_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` without macro-average rows (``lang`` in :data:`AGGREGATE_ROWS`)."""
    keep = ~df["lang"].astype(str).str.strip().str.lower().isin(AGGREGATE_ROWS)
    return df[keep.to_numpy()]


def align_languages(tables: dict[str, pd.DataFrame], *, how: Literal["exact", "inner"] = "exact") -> list[str]:
    """Return the common language list of lang-indexed ``tables`` (first table's order).

    ``how="exact"`` raises naming, per table, the languages it lacks; ``"inner"`` keeps the
    intersection (and still raises when it is empty).
    """
    names = list(tables)
    union: list[str] = []
    for t in tables.values():
        union += [lang for lang in t.index if lang not in union]
    missing = {n: [lang for lang in union if lang not in tables[n].index] for n in names}
    if how == "exact" and any(missing.values()):
        detail = "; ".join(f"{n} lacks {m}" for n, m in missing.items() if m)
        raise CorrelationInputError(
            f"language sets differ: {detail}. Supply the same languages in every table, or pass how='inner' "
            "to use only the languages they share")
    if how not in ("exact", "inner"):
        raise ValueError(f"how={how!r}; use 'exact' or 'inner'")
    common = [lang for lang in tables[names[0]].index if all(lang in t.index for t in tables.values())]
    if not common:
        raise CorrelationInputError(f"tables {names} share no language")
    return common


def _check_finite(df: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    for col in columns:
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = [lang for lang, v in vals.items() if not np.isfinite(v)]
        if bad:
            raise CorrelationInputError(
                f"{name}: column {col!r} is NaN/non-numeric for language(s) {bad}; fill the score or drop "
                "the language from every table")


# ----------------------------------------------------------------------------- vectorised statistics
def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray | np.floating:
    """Return Pearson r for each row pair of ``x`` and ``y`` (shape [..., n]; a NumPy scalar for 1-D); NaN where constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(-1) / den
    r = np.where(den > 0, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray | np.floating:
    """Return Spearman rho (Pearson of average ranks) for each row pair."""
    return _rowwise_pearson(sps.rankdata(x, axis=-1), sps.rankdata(y, axis=-1))


def correlation_bootstrap_ci(x: np.ndarray, y: np.ndarray, *, method: Literal["pearson", "spearman"] = "pearson",
                             n_boot: int = 2000, level: float = 0.95, rng: np.random.Generator) -> tuple[float, float]:
    """Return the percentile bootstrap CI of the correlation, resampling languages with replacement.

    Resamples whose values are constant (correlation undefined) are dropped.
    """
    n = len(x)
    idx = rng.integers(0, n, size=(n_boot, n))
    fn = _rowwise_pearson if method == "pearson" else _rowwise_spearman
    r = fn(x[idx], y[idx])
    r = r[np.isfinite(r)]
    if r.size == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(r, [alpha, 1 - alpha])
    return float(lo), float(hi)


def permutation_pvalue(x: np.ndarray, y: np.ndarray, *, method: Literal["pearson", "spearman"] = "pearson",
                       n_perm: int = 5000, rng: np.random.Generator) -> float:
    """Return the two-sided permutation p-value of the correlation: P(|r_perm| >= |r_obs|).

    When n! <= ``n_perm`` every pairing is enumerated (exact p, the observed pairing included);
    otherwise ``n_perm`` random pairings give (1 + hits) / (1 + n_perm), which is never 0.
    """
    n = len(x)
    fn = _rowwise_pearson if method == "pearson" else _rowwise_spearman
    r_obs = float(fn(x, y))
    if not np.isfinite(r_obs):
        return math.nan
    # Tolerance so that permutations tying the observed |r| (up to float noise) count as extreme.
    tol = 1e-12 * max(1.0, abs(r_obs))
    if math.factorial(n) <= n_perm:
        perms = np.array(list(itertools.permutations(range(n))))
        r_null = fn(np.broadcast_to(x, perms.shape), y[perms])
        return float(np.mean(np.abs(r_null) >= abs(r_obs) - tol))
    hits = 0
    for start in range(0, n_perm, 2048):  # chunks bound memory for large n_perm
        m = min(2048, n_perm - start)
        perms = rng.permuted(np.broadcast_to(np.arange(n), (m, n)), axis=1)
        r_null = fn(np.broadcast_to(x, perms.shape), y[perms])
        hits += int(np.sum(np.abs(r_null) >= abs(r_obs) - tol))
    return (1 + hits) / (1 + n_perm)


def paired_bootstrap_ci(columns: dict[str, np.ndarray], statistic: Callable[[dict[str, np.ndarray]], np.ndarray], *,
                        n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Return (point, lo, hi): ``statistic`` on paired per-unit columns and its percentile bootstrap CI.

    Every column holds one value per unit (e.g. per prompt: base, tuned and patched toxicity);
    units are resampled with replacement and all columns move together, so paired differences
    and ratios of differences keep their pairing. ``statistic`` maps ``{name: array [..., n]}``
    to an array ``[...]`` (vectorised over resamples); non-finite resample values are dropped.
    """
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    sizes = {len(v) for v in cols.values()}
    if len(sizes) != 1:
        raise ValueError(f"paired_bootstrap_ci: columns differ in length {sorted(sizes)}; pass one value per unit")
    n = sizes.pop()
    if n == 0:
        return math.nan, math.nan, math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(statistic(cols))
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        boot = np.asarray(statistic({k: v[idx] for k, v in cols.items()}), dtype=float)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0 or n < 2:
        return point, math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


def mean_ci(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float, float]:
    """Return (mean, lo, hi, p) for the mean of ``values``: Student-t CI and two-sided t-test p against 0.

    The one implementation of a per-group mean CI (per-language EMT change, key activations). The
    percentile bootstrap of a mean is too narrow at small n (about 11% one-sided misses at n = 4,
    4% at n = 25, nominal 2.5%); the t-interval keeps its level for roughly normal means. Fewer than
    2 finite values or zero spread give NaN bounds (and p NaN), never a zero-width CI.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, math.nan
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return m, math.nan, math.nan, math.nan
    q = float(sps.t.ppf(1 - (1 - level) / 2, n - 1))
    p = float(2 * sps.t.sf(abs(m) / se, n - 1))
    return m, m - q * se, m + q * se, p


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Return Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def empirical_pvalue(observed: float, null: np.ndarray) -> float:
    """Return the one-sided (greater) empirical p-value (1 + #null >= observed) / (1 + #null)."""
    null = np.asarray(null, dtype=float)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


# ----------------------------------------------------------------------------- public API
def correlate(signals: pd.DataFrame, drops: pd.DataFrame, *, exclude: Sequence[str] = ("en",),
              outcomes: Sequence[str] | None = None, signal_columns: Sequence[str] | None = None,
              n_boot: int = 2000, n_perm: int = 5000, seed: int = 0,
              how: Literal["exact", "inner"] = "exact") -> pd.DataFrame:
    """Return one row per (signal, outcome): n, Pearson/Spearman with p, bootstrap CIs, permutation p.

    ``signals`` has ``lang`` plus one numeric column per signal (e.g. the
    :func:`interp.crosslingual.multilinguality.dual_multilinguality` table); ``drops`` has ``lang`` plus the
    outcomes (default: whichever of ``emt_reduction_pct``, ``toxprob_reduction``,
    ``emt_change_pct`` and ``toxprob_change`` are present).
    Languages in ``exclude`` (English, the training language) are dropped first. The language
    sets must match (``how="inner"`` keeps the shared ones); NaN scores and fewer than 3
    languages raise :class:`CorrelationInputError`. Rows with n < 8 carry a ``warning``.
    Same inputs and ``seed`` give the same table.
    """
    sig = lang_indexed(signals, "signals")
    drp = lang_indexed(drops, "drops")
    excluded = {normalize_language(e, where="exclude") for e in exclude}
    sig = sig[[lang not in excluded for lang in sig.index]]
    drp = drp[[lang not in excluded for lang in drp.index]]
    if outcomes is None:
        outcomes = [c for c in DEFAULT_OUTCOMES if c in drp.columns]
        if not outcomes:
            raise CorrelationInputError(
                f"drops: none of the outcome columns {list(DEFAULT_OUTCOMES)} present (columns are "
                f"{list(drp.columns)}); pass outcomes=[...] to name them")
    missing_out = [c for c in outcomes if c not in drp.columns]
    if missing_out:
        raise CorrelationInputError(f"drops: outcome column(s) {missing_out} missing (columns are {list(drp.columns)})")
    if signal_columns is None:
        signal_columns = [c for c in sig.columns if pd.api.types.is_numeric_dtype(sig[c])]
    if not signal_columns:
        raise CorrelationInputError(f"signals: no numeric signal column (columns are {list(sig.columns)})")
    missing_sig = [c for c in signal_columns if c not in sig.columns]
    if missing_sig:
        raise CorrelationInputError(f"signals: column(s) {missing_sig} missing (columns are {list(sig.columns)})")
    langs = align_languages({"signals": sig, "drops": drp}, how=how)
    if len(langs) < MIN_N:
        raise CorrelationInputError(
            f"only {len(langs)} language(s) {langs} left after excluding {sorted(excluded)}; a correlation "
            f"needs at least {MIN_N}")
    sig, drp = sig.loc[langs], drp.loc[langs]
    _check_finite(sig, "signals", signal_columns)
    _check_finite(drp, "drops", outcomes)

    rows = []
    n = len(langs)
    for s_i, s in enumerate(signal_columns):
        x = sig[s].to_numpy(dtype=float)
        for o_i, o in enumerate(outcomes):
            y = drp[o].to_numpy(dtype=float)
            # One child stream per (signal, outcome), so adding a column leaves other rows unchanged.
            rng = np.random.default_rng([seed, s_i, o_i])
            warnings = []
            if n < SMALL_N:
                warnings.append(f"small sample: n={n} < {SMALL_N} languages, CIs and p-values are unstable")
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                warnings.append(f"constant {'signal ' + s if np.ptp(x) == 0 else 'outcome ' + o}: correlation undefined")
                pr = pp = sr = sp = math.nan
            else:
                pr, pp = (float(v) for v in sps.pearsonr(x, y))
                sr, sp = (float(v) for v in sps.spearmanr(x, y))
            blo, bhi = correlation_bootstrap_ci(x, y, method="pearson", n_boot=n_boot, rng=rng)
            slo, shi = correlation_bootstrap_ci(x, y, method="spearman", n_boot=n_boot, rng=rng)
            rows.append({
                "signal": s, "outcome": o, "n": n, "languages": ",".join(langs),
                "pearson_r": pr, "pearson_p": pp, "spearman_rho": sr, "spearman_p": sp,
                "boot_lo": blo, "boot_hi": bhi, "spearman_boot_lo": slo, "spearman_boot_hi": shi,
                "perm_p": permutation_pvalue(x, y, method="pearson", n_perm=n_perm, rng=rng),
                "spearman_perm_p": permutation_pvalue(x, y, method="spearman", n_perm=n_perm, rng=rng),
                "warning": "; ".join(warnings),
            })
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS))


__all__ = ["correlate", "correlation_bootstrap_ci", "paired_bootstrap_ci", "mean_ci", "holm", "empirical_pvalue", "permutation_pvalue", "align_languages", "CorrelationInputError",
           "drop_aggregate_rows", "AGGREGATE_ROWS",
           "DEFAULT_OUTCOMES", "SMALL_N", "MIN_N"]
