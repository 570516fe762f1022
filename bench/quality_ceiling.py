"""What a batch learner reaches on a stream's features: the ceiling of ``bench quality``.

The prequential learners of ``bench quality`` (federated, centralised, local-only, River)
each score a row before they learn from it. To tell "our model fits badly" from "the
features carry no more", this module retrains two batch learners at every quarter of
the run (event time) on ALL labelled rows before it, and scores the next quarter:

- ``logistic``: a logistic regression on standardised inputs clipped at 5 (the best a
  linear model such as River's does with these features, fitted to convergence);
- ``gbm``: gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``),
  which find interactions and thresholds a linear model cannot;
- ``gbm_one_silo``: the same trees trained on silo 0's earlier rows only (what one silo
  has without federation), scored on every silo's next quarter.

Both see the silo as a one-hot input (the pooled learner of ``bench quality`` knows it
too, through the base-rate correction). Quarter 1 has no earlier rows: ``None``.
If ``gbm`` is far above ``logistic``, the stream has signal a linear learner cannot
use; if ``gbm_one_silo`` equals ``gbm``, one silo's rows already suffice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from app.model.exact_metrics import exact_roc_auc

if TYPE_CHECKING:
    from bench.quality_streams import Stream

__all__ = ["batch_ceiling", "pooled_rows"]

logger = logging.getLogger(__name__)

QUARTERS = 4


def pooled_rows(stream: Stream) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled rows of all silos in event-time order: ``X``, ``y``, silo index."""
    X = np.concatenate([s.X for s in stream.silos]).astype(np.float64)
    y = np.concatenate([s.y for s in stream.silos])
    silo = np.concatenate([np.full(s.rows, i) for i, s in enumerate(stream.silos)])
    order = np.argsort(np.concatenate([s.order for s in stream.silos]), kind="stable")
    X, y, silo = X[order], y[order], silo[order]
    known = y >= 0
    return X[known], y[known].astype(np.int64), silo[known]


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if not 0 < labels.sum() < labels.size:
        return None
    return round(float(exact_roc_auc(scores, labels)), 4)


def batch_ceiling(stream: Stream) -> dict[str, list[float | None]]:
    """Exact ROC AUC per quarter of batch learners retrained on everything before it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    X, y, silo = pooled_rows(stream)
    n_silos = len(stream.silos)
    out: dict[str, list[float | None]] = {"logistic": [None], "gbm": [None], "gbm_one_silo": [None]}

    def trees() -> Any:
        return HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
            random_state=0,
        )  # fmt: skip

    for k in range(1, QUARTERS):
        a, b = k * y.size // QUARTERS, (k + 1) * y.size // QUARTERS
        mean, std = X[:a].mean(axis=0), X[:a].std(axis=0) + 1e-6
        Z = np.concatenate([np.clip((X - mean) / std, -5, 5), np.eye(n_silos)[silo]], axis=1)
        test_y = y[a:b]
        if y[:a].sum() == 0:
            for key in out:
                out[key].append(None)
            continue
        linear = LogisticRegression(max_iter=3000).fit(Z[:a], y[:a])
        out["logistic"].append(_auc(linear.decision_function(Z[a:b]), test_y))
        gbm = trees().fit(Z[:a], y[:a])
        out["gbm"].append(_auc(gbm.predict_proba(Z[a:b])[:, 1], test_y))
        own = silo[:a] == 0
        if 0 < y[:a][own].sum() < own.sum():
            alone = trees().fit(Z[:a][own], y[:a][own])
            out["gbm_one_silo"].append(_auc(alone.predict_proba(Z[a:b])[:, 1], test_y))
        else:
            out["gbm_one_silo"].append(None)
    return out
