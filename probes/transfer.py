"""Multilingual transfer: the English probe scored per language against RTP-LX human ratings."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from probes.features import extract_features
from probes.probe import ToxicityProbe

TRANSFER_COLUMNS = ("lang", "n", "n_toxic", "n_clean", "auc", "spearman", "n_rated")


def transfer_report(model: Any, probe: ToxicityProbe, prompts: Sequence[Any], *, toxic_threshold: float = 3.0,
                    clean_threshold: float = 1.34, batch_size: int = 32, cache_dir: Any = None,
                    progress: bool = True, check: bool = True, n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Return one row per language: ``lang, n, n_toxic, n_clean, auc, spearman, n_rated``.

    Each prompt (``interp.data.records.Prompt``) with a human Toxicity rating is scored by the probe on
    ``model``'s features (the probe's own layer and pooling). Ratings >= ``toxic_threshold``
    count as toxic and <= ``clean_threshold`` as clean; ratings in between are dropped from the
    AUC (``n`` = ``n_toxic + n_clean``). ``spearman`` correlates the probe score with the raw
    rating over all ``n_rated`` rated prompts. AUC is NaN when a language lacks either class.
    The table carries ids' aggregates only, never prompt text. With ``n_boot > 0`` the columns
    ``auc_lo``/``auc_hi`` add a 95% percentile bootstrap CI of the AUC, resampling the toxic and
    the clean prompts of the language separately (so every resample holds both classes).
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    if clean_threshold >= toxic_threshold:
        raise ValueError(f"clean_threshold ({clean_threshold}) must be below toxic_threshold ({toxic_threshold})")
    if check:
        probe.check_model(model, strict=False, where="transfer_report")
    rated = [p for p in prompts if p.toxicity is not None and not math.isnan(float(p.toxicity))]
    if not rated:
        raise ValueError(f"none of the {len(prompts)} prompts has a toxicity rating; transfer needs RTP-LX "
                         "prompts (Prompt.toxicity 1-5)")
    layer = probe.meta_.get("layer")
    pooling = probe.meta_.get("pooling", "mean")
    X = extract_features(model, [p.text for p in rated], layer=layer, pooling=pooling, batch_size=batch_size,
                         cache_dir=cache_dir, progress=progress)
    scores = probe.decision_function(X)
    ratings = np.array([float(p.toxicity) for p in rated])
    langs = np.array([p.lang for p in rated])
    rows = []
    for lang in sorted(set(langs.tolist())):
        sel = langs == lang
        s, r = scores[sel], ratings[sel]
        toxic, clean = r >= toxic_threshold, r <= clean_threshold
        keep = toxic | clean
        y = toxic[keep].astype(int)
        auc = float(roc_auc_score(y, s[keep])) if 0 < y.sum() < len(y) else math.nan
        rho = float(spearmanr(s, r).statistic) if len(r) > 2 and np.ptp(r) > 0 else math.nan
        rows.append({"lang": lang, "n": int(keep.sum()), "n_toxic": int(toxic.sum()), "n_clean": int(clean.sum()),
                     "auc": auc, "spearman": rho, "n_rated": int(sel.sum())})
        if n_boot > 0:
            rows[-1]["auc_lo"], rows[-1]["auc_hi"] = _auc_ci(s[toxic], s[clean], n_boot, seed)
    cols = list(TRANSFER_COLUMNS) + (["auc_lo", "auc_hi"] if n_boot > 0 else [])
    return pd.DataFrame(rows, columns=cols)


def _auc_ci(pos: np.ndarray, neg: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Return the stratified percentile bootstrap 95% CI of the AUC of ``pos`` vs ``neg`` scores."""
    if len(pos) == 0 or len(neg) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    p = pos[rng.integers(0, len(pos), size=(n_boot, len(pos)))]
    q = neg[rng.integers(0, len(neg), size=(n_boot, len(neg)))]
    # AUC = P(pos > neg) + 0.5 P(pos == neg), computed per resample over all pairs
    gt = (p[:, :, None] > q[:, None, :]).mean(axis=(1, 2))
    eq = (p[:, :, None] == q[:, None, :]).mean(axis=(1, 2))
    aucs = gt + 0.5 * eq
    return float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))


__all__ = ["transfer_report", "TRANSFER_COLUMNS"]
