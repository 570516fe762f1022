"""Learnable synthetic micro-batches for tests, the benchmark and demos.

The label depends on the features through a fixed logistic direction, so a model that
learns reaches a prequential ROC AUC well above 0.5; each silo gets a shifted feature
distribution (non-IID), which federated standardisation has to absorb.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import numpy.typing as npt

from app.features.frames import encode_batch

__all__ = ["WEIGHTS", "learnable_rows", "synthetic_frames"]

logger = logging.getLogger(__name__)

WEIGHTS = np.array([1.5, -2.0, 1.0, 0.0, 0.5, -1.0, 0.0, 2.0], dtype=np.float32)


def learnable_rows(
    rng: np.random.Generator, rows: int, n_features: int = 8, shift: float = 0.0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``rows`` feature rows (mean 10 + shift, std 3) and labels from a logistic model."""
    w = np.resize(WEIGHTS, n_features)
    z_rows = rng.normal(size=(rows, n_features)).astype(np.float32)
    X = (z_rows * 3.0 + 10.0 + shift).astype(np.float32)
    logits = z_rows @ w - 1.0
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return X, y


def synthetic_frames(
    silo: int,
    spec_version: str,
    rows: int,
    *,
    n_features: int = 8,
    frame_rows: int = 500,
    seed: int = 0,
) -> list[bytes]:
    """Encoded batch frames holding ``rows`` learnable rows of one silo."""
    rng = np.random.default_rng(seed * 1000 + silo)
    frames = []
    for start in range(0, rows, frame_rows):
        n = min(frame_rows, rows - start)
        X, y = learnable_rows(rng, n, n_features, shift=float(silo % 3))
        frames.append(
            encode_batch(
                silo=silo,
                spec_version=spec_version,
                X=X,
                y=y,
                scores=np.full(n, np.nan, np.float32),
                ts=np.full(n, time.time()),
            )
        )
    return frames
