"""Probe metrics: accuracy, ROC-AUC and F1 on held-out features."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d

from probes.probe import ToxicityProbe, _host


def probe_metrics(probe: ToxicityProbe, X: Any, y: Any) -> dict[str, float | int]:
    """Return ``{accuracy, roc_auc, f1, n, n_toxic}`` of ``probe`` on features ``X`` and labels ``y``.

    Labels are the probe's ``classes_``; ``classes_[1]`` counts as toxic (the F1 positive class).
    ``roc_auc`` is NaN when ``y`` holds a single class (AUC is undefined there).
    """
    from sklearn.metrics import f1_score, roc_auc_score

    scores = probe.decision_function(X)  # validates X against the probe
    y = column_or_1d(_host(y))
    check_consistent_length(scores, y)
    unknown = np.setdiff1d(np.unique(y), probe.classes_)
    if len(unknown):
        raise ValueError(f"y has labels {unknown[:10].tolist()} the probe was not trained on; its classes_ are "
                         f"{probe.classes_.tolist()} (toxic = {probe.classes_[1]!r})")
    toxic = y == probe.classes_[1]
    pred = scores > 0
    both = 0 < toxic.sum() < len(toxic)
    return {
        "accuracy": float((pred == toxic).mean()),
        "roc_auc": float(roc_auc_score(toxic, scores)) if both else math.nan,
        "f1": float(f1_score(toxic, pred, zero_division=0.0)),
        "n": int(len(y)),
        "n_toxic": int(toxic.sum()),
    }


__all__ = ["probe_metrics"]
