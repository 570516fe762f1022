"""Exact ROC AUC and average precision from raw scores (the reference for the histograms).

Used by ``bench quality`` (exact figures beside the published mergeable ones) and by the
tests of :mod:`app.model.metrics`. Both are O(n log n).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

__all__ = ["exact_average_precision", "exact_roc_auc"]

logger = logging.getLogger(__name__)


def exact_roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mann-Whitney U with average ranks for ties; NaN when a class is absent."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(labels).reshape(-1) > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank per value
    ranks = avg_rank[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def exact_average_precision(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """AP with one threshold per distinct score, descending (scikit-learn's convention)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1) > 0
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], y[order].astype(np.float64)
    last = np.r_[s[1:] != s[:-1], True]  # last row of each group of equal scores
    tp = np.cumsum(pos)[last]
    predicted = np.flatnonzero(last) + 1.0
    recall_gain = np.diff(np.r_[0.0, tp]) / pos.sum()
    return float(np.sum(recall_gain * tp / predicted))
