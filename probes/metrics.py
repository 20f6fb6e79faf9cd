"""Probe metrics: accuracy, ROC-AUC and F1 on held-out features."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from probes.probe import ToxicityProbe, as_features, as_labels


def probe_metrics(probe: ToxicityProbe, X: Any, y: Any) -> dict[str, float | int]:
    """Return ``{accuracy, roc_auc, f1, n, n_toxic}`` of ``probe`` on features ``X`` and labels ``y``.

    ``roc_auc`` is NaN when ``y`` holds a single class (AUC is undefined there).
    """
    from sklearn.metrics import f1_score, roc_auc_score

    X = as_features(X, d_model=probe.d_model)
    y = as_labels(y, X.shape[0], need_both=False)
    scores = probe.decision_function(X)
    pred = (scores > 0).astype(np.int64)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float((pred == y).mean()),
        "roc_auc": float(roc_auc_score(y, scores)) if both else math.nan,
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "n": int(len(y)),
        "n_toxic": int(y.sum()),
    }


__all__ = ["probe_metrics"]
