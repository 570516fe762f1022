"""Federated feature standardisation from mergeable moment statistics.

Each silo sends only ``count``, per-feature ``sum`` and ``sumsq`` (float64); the server
merges them and derives a global mean/std. Raw rows never leave the silo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["MomentStats", "merge_all", "standardize"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MomentStats:
    """Count, per-feature sum and sum of squares of a set of feature rows.

    Attributes
    ----------
    count : int
        Number of rows.
    sum : np.ndarray
        Per-feature sum, float64, shape ``(n_features,)``.
    sumsq : np.ndarray
        Per-feature sum of squares, float64, shape ``(n_features,)``.
    """

    count: int
    sum: F64
    sumsq: F64

    def __post_init__(self) -> None:
        s = np.asarray(self.sum, dtype=np.float64).reshape(-1)
        q = np.asarray(self.sumsq, dtype=np.float64).reshape(-1)
        if s.shape != q.shape:
            raise ValueError(f"sum shape {s.shape} != sumsq shape {q.shape}")
        if int(self.count) < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        object.__setattr__(self, "count", int(self.count))
        object.__setattr__(self, "sum", s)
        object.__setattr__(self, "sumsq", q)

    @property
    def n_features(self) -> int:
        """Number of features."""
        return int(self.sum.shape[0])

    @classmethod
    def empty(cls, n_features: int) -> MomentStats:
        """Statistics of zero rows."""
        return cls(0, np.zeros(n_features), np.zeros(n_features))

    @classmethod
    def from_rows(cls, X: npt.ArrayLike) -> MomentStats:
        """Compute the moments of a 2-D array of rows (accumulated in float64)."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D array of rows, got shape {x.shape}")
        return cls(int(x.shape[0]), x.sum(axis=0), np.square(x).sum(axis=0))

    def merge(self, other: MomentStats) -> MomentStats:
        """Moments of the union of both row sets."""
        if other.n_features != self.n_features:
            raise ValueError(
                f"cannot merge stats with {self.n_features} and {other.n_features} features"
            )
        return MomentStats(self.count + other.count, self.sum + other.sum, self.sumsq + other.sumsq)

    def mean_std(self, eps: float = 1e-6) -> tuple[F32, F32]:
        """Global mean and (population) standard deviation as float32.

        Features whose std is below ``eps`` (constant, or no rows at all) get std 1, so
        they are only centred and never blown up by a near-zero divisor.
        """
        if self.count == 0:
            return (
                np.zeros(self.n_features, dtype=np.float32),
                np.ones(self.n_features, dtype=np.float32),
            )
        mean = self.sum / self.count
        var = np.maximum(self.sumsq / self.count - np.square(mean), 0.0)
        std = np.sqrt(var)
        std = np.where(std < eps, 1.0, std)
        return mean.astype(np.float32), std.astype(np.float32)

    def to_arrays(self) -> list[np.ndarray]:
        """``[count (int64, shape (1,)), sum (float64), sumsq (float64)]`` for transport."""
        return [np.array([self.count], dtype=np.int64), self.sum.copy(), self.sumsq.copy()]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> MomentStats:
        """Inverse of :meth:`to_arrays`."""
        if len(arrays) != 3:
            raise ValueError(f"expected [count, sum, sumsq], got {len(arrays)} arrays")
        count_arr = np.asarray(arrays[0]).reshape(-1)
        if count_arr.shape != (1,):
            raise ValueError(f"count must hold one value, got shape {count_arr.shape}")
        return cls(int(count_arr[0]), np.asarray(arrays[1]), np.asarray(arrays[2]))


def merge_all(stats: Iterable[MomentStats]) -> MomentStats:
    """Merge any number of :class:`MomentStats` (at least one)."""
    items = list(stats)
    if not items:
        raise ValueError("merge_all needs at least one MomentStats")
    out = items[0]
    for s in items[1:]:
        out = out.merge(s)
    return out


def standardize(X: npt.ArrayLike, mean: npt.ArrayLike, std: npt.ArrayLike) -> F32:
    """Return ``(X - mean) / std`` as float32 (broadcast over rows)."""
    x = np.asarray(X, dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    if m.shape != (x.shape[-1],) or s.shape != (x.shape[-1],):
        raise ValueError(f"mean/std shapes {m.shape}/{s.shape} do not match {x.shape[-1]} features")
    out: F32 = (x - m) / s
    return out
