"""Mergeable evaluation metrics from per-class score histograms.

A silo sends two integer histograms of predicted probabilities (positives, negatives),
the sum of log losses and the labelled row count. Histograms add, so the server gets
the global ROC AUC, PR AUC and log loss of the pooled data exactly as if it had seen all
scores (up to the bin width). A global AUC is never an average of per-silo AUCs.

Bins are uniform in **log-odds** ``log(p / (1 - p))`` on ``[LOGIT_MIN, LOGIT_MAX]`` =
``[-46, 17]`` (p from 1e-20 to the largest float32 below 1), not in probability: a
calibrated rare-event model puts most rows and many positives below p = 0.001, which
equal-width bins on [0, 1] lumped into one tie (measured: ROC AUC 0.025 low), and a
confident model on separable data scores many rows below 1e-7. With 2,000 bins (width
0.032) the error against the exact rank AUC is ~1e-5 at 0.2 % positives (unit test). PR AUC is
average precision; positives inside a bin are credited at their expected rank within it
(the bin's rows in random order), which removes the step bias of one threshold per bin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "LOGIT_MAX",
    "LOGIT_MIN",
    "LOG_LOSS_EPS",
    "N_BINS",
    "ScoreHistogram",
    "bin_of",
    "merge_histograms",
]

logger = logging.getLogger(__name__)

LOG_LOSS_EPS = 1e-7
LOGIT_MIN = -46.0  # p ~ 1e-20
LOGIT_MAX = 17.0  # float32 probabilities stop short of 1 at about 1 - 6e-8 (logit 16.6)
N_BINS = 2000
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def bin_of(scores: npt.ArrayLike, n_bins: int) -> I64:
    """Bin index of each probability: uniform in log-odds on ``[LOGIT_MIN, LOGIT_MAX]``.

    Monotone in the score, so ranks across bins are exact; scores beyond the range go to
    the first or last bin.
    """
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-300, 1.0)
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p)  # +inf for p == 1: the last bin
    z = np.clip(z, LOGIT_MIN, LOGIT_MAX)
    idx = np.floor((z - LOGIT_MIN) * (n_bins / (LOGIT_MAX - LOGIT_MIN))).astype(np.int64)
    out: I64 = np.clip(idx, 0, n_bins - 1)
    return out


def _zeros(n: int) -> I64:
    return np.zeros(n, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Per-class histograms of scores in ``[0, 1]`` plus log-loss accumulators.

    Bin ``b`` holds scores whose log-odds lie in ``[LOGIT_MIN + b w, LOGIT_MIN + (b + 1) w)``
    with ``w = (LOGIT_MAX - LOGIT_MIN) / n_bins`` (see :func:`bin_of`).

    Attributes
    ----------
    n_bins : int
        Number of bins, uniform in log-odds.
    pos, neg : np.ndarray
        int64 counts of positive / negative examples per bin.
    loss_sum : float
        Sum of per-example log losses (probabilities clipped to ``[eps, 1 - eps]``).
    count : int
        Number of labelled examples.
    """

    n_bins: int = N_BINS
    pos: I64 = field(default_factory=lambda: _zeros(0))
    neg: I64 = field(default_factory=lambda: _zeros(0))
    loss_sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        for name in ("pos", "neg"):
            arr = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1)
            if arr.size == 0:
                arr = _zeros(self.n_bins)
            if arr.shape != (self.n_bins,):
                raise ValueError(f"{name} must have {self.n_bins} bins, got {arr.shape}")
            if np.any(arr < 0):
                raise ValueError(f"{name} counts must be >= 0")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "n_bins", int(self.n_bins))
        object.__setattr__(self, "loss_sum", float(self.loss_sum))
        object.__setattr__(self, "count", int(self.count))

    @classmethod
    def from_scores(
        cls, scores: npt.ArrayLike, labels: npt.ArrayLike, n_bins: int = N_BINS
    ) -> ScoreHistogram:
        """Histogram predicted probabilities; rows with a label < 0 are ignored."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        lab = np.asarray(labels).reshape(-1)
        if s.shape != lab.shape:
            raise ValueError(f"{s.shape[0]} scores but {lab.shape[0]} labels")
        known = lab >= 0
        s, is_pos = s[known], lab[known] > 0
        if np.any(~np.isfinite(s)):
            raise ValueError("scores must be finite")
        s = np.clip(s, 0.0, 1.0)
        bins = bin_of(s, n_bins)
        pos = np.bincount(bins[is_pos], minlength=n_bins).astype(np.int64)
        neg = np.bincount(bins[~is_pos], minlength=n_bins).astype(np.int64)
        p = np.clip(s, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        loss = -np.where(is_pos, np.log(p), np.log1p(-p))
        return cls(n_bins, pos, neg, float(loss.sum()), int(s.shape[0]))

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """Histogram of the pooled examples of both."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge {self.n_bins} and {other.n_bins} bins")
        return ScoreHistogram(
            self.n_bins,
            self.pos + other.pos,
            self.neg + other.neg,
            self.loss_sum + other.loss_sum,
            self.count + other.count,
        )

    @property
    def positives(self) -> int:
        """Number of positive examples."""
        return int(self.pos.sum())

    @property
    def negatives(self) -> int:
        """Number of negative examples."""
        return int(self.neg.sum())

    def roc_auc(self) -> float:
        """ROC AUC (Mann-Whitney); pairs in the same bin count 1/2 (the trapezoid).

        Returns NaN when either class is absent.
        """
        n_pos, n_neg = self.positives, self.negatives
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        neg = self.neg.astype(np.float64)
        neg_below = np.cumsum(neg) - neg
        wins = np.sum(self.pos.astype(np.float64) * (neg_below + 0.5 * neg))
        return float(wins / (float(n_pos) * float(n_neg)))

    def pr_auc(self) -> float:
        """Average precision ``AP = mean over positives of the precision at their rank``.

        Bins are visited from high to low scores. Inside a bin with ``p`` positives and
        ``n`` negatives the rows are taken in random order: the ``k``-th positive is
        expected after ``n (k - 1/2) / p`` of the bin's negatives. NaN without positives.
        """
        n_pos = self.positives
        if n_pos == 0:
            return float("nan")
        pos = self.pos[::-1].astype(np.float64)
        neg = self.neg[::-1].astype(np.float64)
        tp_before = np.cumsum(pos) - pos
        fp_before = np.cumsum(neg) - neg
        bins = np.flatnonzero(pos > 0)
        counts = self.pos[::-1][bins]
        b = np.repeat(bins, counts)  # one entry per positive
        start = np.cumsum(counts) - counts
        k = np.arange(b.size, dtype=np.float64) - np.repeat(start, counts) + 1.0
        tp = tp_before[b] + k
        fp = fp_before[b] + neg[b] * (k - 0.5) / pos[b]
        return float(np.sum(tp / (tp + fp)) / n_pos)

    def log_loss(self) -> float:
        """Mean log loss over labelled examples (NaN when empty)."""
        return self.loss_sum / self.count if self.count else float("nan")

    def summary(self) -> dict[str, float]:
        """Scalar metrics, e.g. for ``fl.metrics`` or logs."""
        return {
            "roc_auc": self.roc_auc(),
            "pr_auc": self.pr_auc(),
            "log_loss": self.log_loss(),
            "count": float(self.count),
            "positives": float(self.positives),
        }

    def to_arrays(self) -> list[np.ndarray]:
        """``[pos (int64), neg (int64), [loss_sum] (float64), [count] (int64)]``."""
        return [
            self.pos.copy(),
            self.neg.copy(),
            np.array([self.loss_sum], dtype=np.float64),
            np.array([self.count], dtype=np.int64),
        ]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> ScoreHistogram:
        """Inverse of :meth:`to_arrays` (``n_bins`` is the histogram length)."""
        if len(arrays) != 4:
            raise ValueError(f"expected [pos, neg, loss_sum, count], got {len(arrays)} arrays")
        pos = np.asarray(arrays[0]).reshape(-1)
        return cls(
            int(pos.shape[0]),
            pos,
            np.asarray(arrays[1]),
            float(np.asarray(arrays[2]).reshape(-1)[0]),
            int(np.asarray(arrays[3]).reshape(-1)[0]),
        )

    def to_dict(self) -> dict[str, int | float | list[int]]:
        """Flat dict of ints, floats and int lists (fits Flower Metric/ConfigRecords)."""
        return {
            "n_bins": self.n_bins,
            "pos": [int(v) for v in self.pos],
            "neg": [int(v) for v in self.neg],
            "loss_sum": self.loss_sum,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreHistogram:
        """Inverse of :meth:`to_dict`."""
        missing = {"n_bins", "pos", "neg", "loss_sum", "count"} - set(data)
        if missing:
            raise ValueError(f"histogram dict is missing keys {sorted(missing)}")
        return cls(
            int(data["n_bins"]),
            np.asarray(data["pos"], dtype=np.int64),
            np.asarray(data["neg"], dtype=np.int64),
            float(data["loss_sum"]),
            int(data["count"]),
        )

    def to_sparse(self) -> dict[str, int | float | list[int]]:
        """Compact dict: only the non-empty bins (``bins``, ``pos``, ``neg`` lists).

        What ``fl.metrics`` and model frames carry so that whole-run figures survive a
        restart without storing thousands of zeros.
        """
        used = np.flatnonzero((self.pos + self.neg) > 0)
        return {
            "n_bins": self.n_bins,
            "bins": [int(v) for v in used],
            "pos": [int(v) for v in self.pos[used]],
            "neg": [int(v) for v in self.neg[used]],
            "loss_sum": self.loss_sum,
            "count": self.count,
        }

    @classmethod
    def from_sparse(cls, data: Mapping[str, Any]) -> ScoreHistogram:
        """Inverse of :meth:`to_sparse` (raises ValueError when malformed)."""
        missing = {"n_bins", "bins", "pos", "neg", "loss_sum", "count"} - set(data)
        if missing:
            raise ValueError(f"sparse histogram is missing keys {sorted(missing)}")
        n_bins = int(data["n_bins"])
        used = np.asarray(data["bins"], dtype=np.int64).reshape(-1)
        pos_used = np.asarray(data["pos"], dtype=np.int64).reshape(-1)
        neg_used = np.asarray(data["neg"], dtype=np.int64).reshape(-1)
        if not used.shape == pos_used.shape == neg_used.shape:
            raise ValueError("sparse histogram lists differ in length")
        if used.size and (used.min() < 0 or used.max() >= n_bins):
            raise ValueError(f"sparse histogram bin outside 0..{n_bins - 1}")
        pos, neg = _zeros(n_bins), _zeros(n_bins)
        np.add.at(pos, used, pos_used)
        np.add.at(neg, used, neg_used)
        return cls(n_bins, pos, neg, float(data["loss_sum"]), int(data["count"]))


def merge_histograms(hists: Iterable[ScoreHistogram]) -> ScoreHistogram:
    """Merge any number of histograms (at least one)."""
    items = list(hists)
    if not items:
        raise ValueError("merge_histograms needs at least one histogram")
    out = items[0]
    for h in items[1:]:
        out = out.merge(h)
    return out
