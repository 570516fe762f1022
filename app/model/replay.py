"""A silo's own memory of past labelled rows, replayed in every local training round.

A round trains on the rows that arrived since the last round. On a rare-event stream that
is a handful of positives (about 6 frauds in 2,000 rows at 0.3 %), and 100 optimizer steps
on them fit the model to this round and forget the earlier ones: in ``bench quality`` the
centralised model got WORSE with smaller rounds or more steps. Training each round on the
new rows plus a bounded sample of the silo's earlier rows fixes that (synthetic stream,
centralised 0.868 -> 0.901 ROC AUC, federated 0.811 -> 0.892).

The buffer holds raw (unstandardised) rows of the silo only; it never leaves the silo
(the ClientApp keeps it in Flower's ``context.state`` on its own SuperNode). Positives
are kept newest-first up to ``positive_share`` of the capacity (rare and precious), the
negatives as a uniform reservoir sample (Vitter's algorithm R) of all negatives seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ReplayBuffer"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ReplayBuffer:
    """Bounded sample of a silo's past labelled rows (immutable: :meth:`add` returns a new one).

    Attributes
    ----------
    X : np.ndarray
        Raw feature rows, float32, shape ``(k, n_features)``; positives first.
    y : np.ndarray
        Their labels in {0, 1}, float32, shape ``(k,)``.
    negatives_seen : int
        Negatives offered so far (the reservoir's denominator).
    capacity : int
        Most rows kept.
    positive_share : float
        Largest share of ``capacity`` positives may take.
    positives_seen : int
        Positives offered so far (with ``negatives_seen``: the silo's stream base rate,
        which the buffer's own mix over-states).
    """

    X: F32
    y: F32
    negatives_seen: int
    capacity: int
    positive_share: float = 0.5
    positives_seen: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 0 or not 0.0 < self.positive_share <= 1.0:
            raise ValueError(
                f"need capacity >= 0 and 0 < positive_share <= 1, got "
                f"{self.capacity}, {self.positive_share}"
            )
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise ValueError(f"rows {self.X.shape} and labels {self.y.shape} do not match")

    @classmethod
    def empty(cls, n_features: int, capacity: int, positive_share: float = 0.5) -> ReplayBuffer:
        """A buffer that has seen nothing."""
        return cls(
            np.zeros((0, n_features), np.float32), np.zeros(0, np.float32), 0, capacity,
            positive_share,
        )  # fmt: skip

    @property
    def rows(self) -> int:
        """Rows held."""
        return int(self.y.shape[0])

    @property
    def seen(self) -> tuple[int, int]:
        """``(labelled, positives)`` offered so far."""
        return self.negatives_seen + self.positives_seen, self.positives_seen

    def add(self, X: npt.ArrayLike, y: npt.ArrayLike, seed: int = 0) -> ReplayBuffer:
        """The buffer after seeing the labelled rows ``X``/``y`` (unknown labels < 0 ignored).

        Deterministic for a given history and ``seed``.
        """
        x = np.asarray(X, dtype=np.float32)
        lab = np.asarray(y, dtype=np.float32).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.X.shape[1] or lab.shape != (x.shape[0],):
            raise ValueError(f"expected rows (n, {self.X.shape[1]}) with n labels")
        if self.capacity == 0:
            return self
        known = lab >= 0
        x, lab = x[known], lab[known]
        pos_cap = int(self.capacity * self.positive_share)
        is_pos = self.y > 0
        new_pos = lab > 0
        px = np.concatenate([self.X[is_pos], x[new_pos]])[-pos_cap:] if pos_cap else x[:0]
        nx, seen = self._reservoir(self.X[~is_pos], x[~new_pos], self.capacity - len(px), seed)
        rows = np.concatenate([px, nx]).astype(np.float32)
        labels = np.concatenate([np.ones(len(px), np.float32), np.zeros(len(nx), np.float32)])
        positives = self.positives_seen + int(new_pos.sum())
        return ReplayBuffer(rows, labels, seen, self.capacity, self.positive_share, positives)

    def _reservoir(self, kept: F32, new: F32, cap: int, seed: int) -> tuple[F32, int]:
        """Algorithm R over the negatives: every negative seen is kept with equal chance."""
        seen = self.negatives_seen
        out = kept[:cap].copy() if len(kept) > cap else kept.copy()
        room = max(0, cap - len(out))
        take = new[:room]
        out = np.concatenate([out, take])
        rest = new[room:]
        seen_after = seen + len(new)
        if len(rest) and cap > 0:
            rng = np.random.default_rng([seed, seen])
            # item i of ``rest`` is the (seen + room + i + 1)-th negative: keep it with
            # probability cap / that count, in a uniformly chosen slot
            totals = seen + room + np.arange(1, len(rest) + 1)
            slots = (rng.random(len(rest)) * totals).astype(np.int64)
            for i in np.flatnonzero(slots < cap):
                out[slots[i]] = rest[i]
        return out.astype(np.float32), seen_after

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for Flower's ``context.state`` (an ArrayRecord)."""
        return {
            "X": self.X,
            "y": self.y,
            "meta": np.array(
                [self.negatives_seen, self.capacity, self.positives_seen], dtype=np.int64
            ),
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], n_features: int, capacity: int
    ) -> ReplayBuffer:
        """Inverse of :meth:`to_arrays`; an empty buffer when the width or capacity changed."""
        try:
            X = np.asarray(arrays["X"], np.float32)
            y = np.asarray(arrays["y"], np.float32)
            meta = [int(v) for v in np.asarray(arrays["meta"]).reshape(-1)]
            seen, cap = meta[:2]
            # a buffer saved before positives were counted: those it holds is the best guess
            positives = meta[2] if len(meta) > 2 else int((y > 0).sum())
        except (KeyError, ValueError, TypeError):
            return cls.empty(n_features, capacity)
        if X.ndim != 2 or X.shape[1] != n_features or cap != capacity or y.shape != (len(X),):
            logger.info("replay buffer dropped: width or capacity changed")
            return cls.empty(n_features, capacity)
        return cls(X, y, seen, capacity, positives_seen=positives)
