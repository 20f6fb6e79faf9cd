"""Dual multilinguality and its correlation with each language's toxicity change."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.core.artifacts import write_csv

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def correlate_available(signals: pd.DataFrame, drops: pd.DataFrame, *, outcomes: tuple[str, ...] = (
        "emt_reduction_pct", "toxprob_reduction"), **kwargs: Any) -> pd.DataFrame:
    """Correlate every (signal, outcome) pair over the non-English languages where both are finite.

    A pair with fewer than 3 such languages gets a row with ``n`` and a ``skipped`` reason instead of
    statistics (e.g. %EMT change is undefined where EMT was 0 before DPO).
    """
    import numpy as np

    from interp.crosslingual.stats import MIN_N, correlate

    drops = drops[drops["lang"] != "all"].replace([np.inf, -np.inf], np.nan)
    rows: list[pd.DataFrame] = []
    for sig in [c for c in signals.columns if c != "lang" and pd.api.types.is_numeric_dtype(signals[c])]:
        for out in outcomes:
            if out not in drops.columns:
                continue
            both = signals[["lang", sig]].merge(drops[["lang", out]], on="lang").dropna()
            both = both[both["lang"] != "en"]
            if len(both) < MIN_N:
                rows.append(pd.DataFrame([{"signal": sig, "outcome": out, "n": len(both),
                                           "skipped": f"only {len(both)} languages with finite values"}]))
                continue
            res = correlate(both[["lang", sig]], both[["lang", out]], outcomes=[out], signal_columns=[sig], **kwargs)
            rows.append(res.assign(skipped=""))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["signal", "outcome", "n", "skipped"])


def stage_correlation(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.crosslingual.multilinguality import dual_multilinguality

    langs = pipe.config.languages
    value = pd.read_csv(pipe.output("neurons", "value_mass"))
    value = value[value["lang"].isin(langs)]
    key = pd.read_csv(pipe.output("key_activations", "ratio"))
    auc = pd.read_csv(pipe.output("probe", "transfer"))[["lang", "auc"]].rename(columns={"auc": "probe_auc"})
    auc = auc.rename(columns={"probe_auc": "auc"})
    retr = pd.read_csv(pipe.output("retrieval", "per_language"))
    # Top-1 retrieval accuracy, and the reference's printed "retrieval acc" under its real name.
    retr = retr[[c for c in ("lang", "retrieval_acc", "mean_paired_cosine") if c in retr.columns]]
    # Languages without parallel data have no retrieval: NaN there, their other signals still count.
    gap = [lang for lang in langs if lang != "en" and lang not in set(retr["lang"])]
    if gap:
        retr = pd.concat([retr, pd.DataFrame({"lang": gap, **{c: float("nan") for c in retr.columns if c != "lang"}})],
                         ignore_index=True)
    signals = dual_multilinguality(value_mass=value, key_ratio=key, probe_auc=auc, retrieval=retr)
    write_csv(d / "dual_multilinguality.csv", signals)
    cmp = pd.read_csv(pipe.output("metrics", "compare"))
    stats = correlate_available(signals, cmp, n_boot=pipe.config.correlation.n_boot,
                                n_perm=pipe.config.correlation.n_perm, seed=pipe.config.seed)
    write_csv(d / "correlation.csv", stats)
    row = stats[(stats["signal"] == "retrieval_acc") & (stats["outcome"] == "emt_reduction_pct")]
    r = float(row["pearson_r"].iloc[0]) if len(row) and "pearson_r" in row else float("nan")
    n = int(row["n"].iloc[0]) if len(row) else 0
    return (f"retrieval vs %EMT reduction (the paper's outcome): Pearson r {r:+.3f} over {n} languages",
            {"signals": pipe.rel(d / "dual_multilinguality.csv"), "correlation": pipe.rel(d / "correlation.csv")})
