"""Micro-batching of feature rows into batch frames, one batcher per silo.

A :class:`MicroBatcher` owns preallocated NumPy buffers for ``max_rows`` rows; ``add``
copies one row in and returns an encoded frame when the batch is full. The worker also
calls ``due``/``flush`` from a timer so that no row waits longer than ``max_ms``.

Model changes
-------------
Every frame records the model (version, round) that produced its ``scores``. When
:meth:`MicroBatcher.set_model` announces a different model while rows are buffered, those
rows are flushed first and the frame is returned to the caller, who must send it. So a
frame never mixes scores of two models. Frames never mix silos either: each silo has its
own batcher (:class:`SiloBatchers`).

Time is passed in (``now_ms``) rather than read, so tests and the reference pipeline are
deterministic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.features.frames import encode_batch
from app.features.validation import check_silo

__all__ = ["MicroBatcher", "SiloBatchers"]

logger = logging.getLogger(__name__)


class MicroBatcher:
    """Accumulates rows of one silo and emits frames of at most ``max_rows`` rows.

    Parameters
    ----------
    silo : int
        Silo of every row added.
    spec_version : str
        :attr:`FeatureSpec.version` of the rows.
    n_features : int
        Row width.
    max_rows : int
        Rows per full frame.
    max_ms : int
        Largest age of the oldest buffered row before :meth:`due` becomes true.
    """

    __slots__ = (
        "_first_ms",
        "_n",
        "_scores",
        "_ts",
        "_x",
        "_y",
        "max_ms",
        "max_rows",
        "model_round",
        "model_version",
        "n_features",
        "silo",
        "spec_version",
    )

    def __init__(
        self,
        silo: int,
        spec_version: str,
        n_features: int,
        max_rows: int = 512,
        max_ms: int = 2000,
    ) -> None:
        if max_rows < 1 or max_ms < 1 or n_features < 1:
            raise ValueError("max_rows, max_ms and n_features must be >= 1")
        self.silo = silo
        self.spec_version = spec_version
        self.n_features = n_features
        self.max_rows = max_rows
        self.max_ms = max_ms
        self.model_version: str | None = None
        self.model_round: int | None = None
        self._x: npt.NDArray[np.float32] = np.zeros((max_rows, n_features), np.float32)
        self._y: npt.NDArray[np.float32] = np.zeros(max_rows, np.float32)
        self._scores: npt.NDArray[np.float32] = np.zeros(max_rows, np.float32)
        self._ts: npt.NDArray[np.float64] = np.zeros(max_rows, np.float64)
        self._n = 0
        self._first_ms = 0

    def __len__(self) -> int:
        return self._n

    def next_row(self) -> npt.NDArray[np.float32]:
        """View of the next free row, to pass as ``out=`` to ``build_row`` (saves a copy)."""
        row: npt.NDArray[np.float32] = self._x[self._n]
        return row

    def add(
        self,
        row: npt.ArrayLike,
        label: float,
        score: float | None,
        ts: float,
        now_ms: int,
    ) -> bytes | None:
        """Buffer one row; return the encoded frame if the batch became full.

        ``score`` None means unscored (stored as NaN).
        """
        n = self._n
        if n == 0:
            self._first_ms = now_ms
        x_row = self._x[n]
        if row is not x_row:
            x_row[:] = row
        self._y[n] = label
        self._scores[n] = math.nan if score is None else score
        self._ts[n] = ts
        self._n = n + 1
        if self._n >= self.max_rows:
            return self.flush(now_ms)
        return None

    def due(self, now_ms: int) -> bool:
        """True if rows are buffered and the oldest waited at least ``max_ms``."""
        return self._n > 0 and now_ms - self._first_ms >= self.max_ms

    def flush(self, now_ms: int) -> bytes | None:
        """Encode the buffered rows (None if empty) and reset the buffer."""
        n = self._n
        if n == 0:
            return None
        frame = encode_batch(
            silo=self.silo,
            spec_version=self.spec_version,
            X=self._x[:n],
            y=self._y[:n],
            scores=self._scores[:n],
            ts=self._ts[:n],
            model_version=self.model_version,
            model_round=self.model_round,
            created_ms=now_ms,
        )
        self._n = 0
        return frame

    def set_model(self, version: str | None, round: int | None, now_ms: int = 0) -> bytes | None:
        """Record the model that scores the next rows.

        Returns the frame of the rows scored by the previous model if the model changed
        while rows were buffered (the caller must send it), else None.
        """
        if version == self.model_version and round == self.model_round:
            return None
        frame = self.flush(now_ms)
        self.model_version = version
        self.model_round = round
        return frame


class SiloBatchers:
    """One :class:`MicroBatcher` per configured silo; outputs are ``(silo, frame)`` pairs."""

    __slots__ = ("_by_silo", "silo_ids")

    def __init__(
        self,
        silo_ids: Sequence[int],
        spec_version: str,
        n_features: int,
        max_rows: int = 512,
        max_ms: int = 2000,
    ) -> None:
        self.silo_ids = tuple(silo_ids)
        self._by_silo = {
            s: MicroBatcher(s, spec_version, n_features, max_rows, max_ms) for s in self.silo_ids
        }

    def __getitem__(self, silo: int) -> MicroBatcher:
        """The batcher of ``silo``; raises InvalidRecord for an unknown silo."""
        return self._by_silo[check_silo(silo, self.silo_ids)]

    def add(
        self,
        silo: int,
        row: npt.ArrayLike,
        label: float,
        score: float | None,
        ts: float,
        now_ms: int,
    ) -> bytes | None:
        """Add a row to ``silo``'s batcher; returns its frame when full."""
        return self[silo].add(row, label, score, ts, now_ms)

    def flush_due(self, now_ms: int) -> list[tuple[int, bytes]]:
        """Flush every batcher whose oldest row is older than ``max_ms``."""
        out: list[tuple[int, bytes]] = []
        for silo, batcher in self._by_silo.items():
            if batcher.due(now_ms):
                frame = batcher.flush(now_ms)
                if frame is not None:
                    out.append((silo, frame))
        return out

    def flush_all(self, now_ms: int) -> list[tuple[int, bytes]]:
        """Flush every non-empty batcher (shutdown, partition revocation)."""
        out: list[tuple[int, bytes]] = []
        for silo, batcher in self._by_silo.items():
            frame = batcher.flush(now_ms)
            if frame is not None:
                out.append((silo, frame))
        return out

    def set_model(
        self, version: str | None, round: int | None, now_ms: int = 0
    ) -> list[tuple[int, bytes]]:
        """Announce a new model to every batcher; returns frames flushed because of it."""
        out: list[tuple[int, bytes]] = []
        for silo, batcher in self._by_silo.items():
            frame = batcher.set_model(version, round, now_ms)
            if frame is not None:
                out.append((silo, frame))
        return out
