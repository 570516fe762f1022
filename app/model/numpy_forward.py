"""Pure-NumPy forward pass (and gradient x input) of the MLP, for scoring single rows.

A jitted JAX ``predict`` of one row costs 50-100 µs of dispatch overhead; the stream
worker scores every event and the chatbot explains one row per request, so both use this
NumPy version of the very same network (canonical parameter order of
:mod:`app.model.params`: ``[W0, b0, W1, b1, ..., Wk, bk]``, ReLU between layers, one
logit, sigmoid). Unit tests keep it equal to :func:`app.model.training.predict` and
:func:`app.model.explain.gradient_x_input`.

Standardisation is folded into the first layer once: ``((x - m) / s) @ W0 + b0`` equals
``x @ (W0 / s[:, None]) + (b0 - (m / s) @ W0)``, so a row costs one matmul per layer.
With ``clip`` (the model's ``input_clip``) the standardised row is clipped first, which
no fold can express: the row is then standardised explicitly.
The wide & deep model (:mod:`app.model.wide_deep`) is the MLP plus a linear term
``z @ w`` on the standardised row: ``wide=w`` adds it, folded the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["NumpyMLP"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class NumpyMLP:
    """Scores rows with fixed parameters and optional standardisation.

    Parameters
    ----------
    arrays : sequence of np.ndarray
        Parameters in canonical order (kernel ``(in, out)`` then bias per layer).
    mean, std : array_like or None
        Standardisation of the raw rows (both or neither).
    wide : array_like or None
        Weights ``w`` of a linear term ``z @ w`` on the standardised row ``z``, added to
        the logit (wide & deep); None for the plain MLP.
    clip : float
        Clip the standardised row to ``[-clip, clip]`` (0 = off; only with mean/std).
    """

    __slots__ = ("_bias", "_clip", "_kernels", "_mean", "_std", "_wide", "n_features")

    def __init__(
        self,
        arrays: Sequence[npt.ArrayLike],
        mean: npt.ArrayLike | None = None,
        std: npt.ArrayLike | None = None,
        wide: npt.ArrayLike | None = None,
        clip: float = 0.0,
    ) -> None:
        if len(arrays) < 2 or len(arrays) % 2:
            raise ValueError(f"expected kernel/bias pairs, got {len(arrays)} arrays")
        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std, or neither")
        kernels = [np.array(arrays[i], dtype=np.float32) for i in range(0, len(arrays), 2)]
        biases = [np.array(arrays[i], dtype=np.float32) for i in range(1, len(arrays), 2)]
        for i, (w, b) in enumerate(zip(kernels, biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ValueError(f"layer {i}: kernel {w.shape} and bias {b.shape} do not match")
            if i and kernels[i - 1].shape[1] != w.shape[0]:
                raise ValueError(f"layer {i}: input width {w.shape[0]} != previous output")
        if kernels[-1].shape[1] != 1:
            raise ValueError(f"the head must output one logit, got {kernels[-1].shape[1]}")
        self.n_features = int(kernels[0].shape[0])
        self._mean: F32 | None = None
        self._std: F32 | None = None
        if mean is not None and std is not None:
            m = np.asarray(mean, dtype=np.float32).reshape(-1)
            s = np.asarray(std, dtype=np.float32).reshape(-1)
            if m.shape != (self.n_features,) or s.shape != (self.n_features,):
                raise ValueError(f"mean/std shapes {m.shape}/{s.shape} != ({self.n_features},)")
            self._mean, self._std = m, s
        self._clip = float(clip) if self._mean is not None and clip > 0 else 0.0
        if self._mean is not None and self._std is not None and not self._clip:
            w0 = kernels[0]
            kernels[0] = (w0 / self._std[:, None]).astype(np.float32)
            biases[0] = (biases[0] - (self._mean / self._std) @ w0).astype(np.float32)
        self._wide: F32 | None = None
        if wide is not None:
            w = np.asarray(wide, dtype=np.float32).reshape(-1)
            if w.shape != (self.n_features,):
                raise ValueError(f"wide weights shape {w.shape} != ({self.n_features},)")
            if self._mean is not None and self._std is not None and not self._clip:
                biases[-1] = (biases[-1] - (self._mean / self._std) @ w).astype(np.float32)
                w = (w / self._std).astype(np.float32)
            self._wide = w
        self._kernels = kernels
        self._bias = biases

    def _input(self, X: npt.ArrayLike) -> F32:
        """What the first layer takes: the raw row (folded) or the clipped standardised one."""
        x = np.asarray(X, dtype=np.float32)
        if self._clip and self._mean is not None and self._std is not None:
            z: F32 = np.clip((x - self._mean) / self._std, -self._clip, self._clip)
            return z
        return x

    def logits(self, X: npt.ArrayLike) -> F32:
        """Logits of raw rows ``X`` (shape ``(n, n_features)`` or ``(n_features,)``)."""
        x = self._input(X)
        h = x
        last = len(self._kernels) - 1
        for i, (w, b) in enumerate(zip(self._kernels, self._bias, strict=True)):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        out: F32 = h[..., 0]
        if self._wide is not None:
            out = out + x @ self._wide
        return out

    def predict(self, X: npt.ArrayLike) -> F32:
        """Probabilities of the positive class for rows ``X`` (float32, shape ``(n,)``)."""
        z = self.logits(np.atleast_2d(np.asarray(X, dtype=np.float32)))
        out: F32 = (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
        return out

    def score(self, row: npt.ArrayLike, offset: float = 0.0) -> float:
        """Probability of one raw row (a Python float); ``offset`` is added to its logit."""
        z = float(self.logits(row)) + offset
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def gradient_x_input(self, row: npt.ArrayLike) -> F32:
        """``z * d logit / d z`` for the standardised row ``z`` (as ``explain`` computes it).

        Without standardisation ``z`` is the raw row; with ``clip`` it is the clipped
        standardised row (the gradient taken with respect to it, as ``explain`` does).
        """
        x = self._input(np.asarray(row, dtype=np.float32).reshape(-1))
        # Forward with the folded first layer, remembering the ReLU masks.
        masks: list[npt.NDArray[np.bool_]] = []
        h = x
        last = len(self._kernels) - 1
        for i, (w, b) in enumerate(zip(self._kernels, self._bias, strict=True)):
            h = h @ w + b
            if i < last:
                mask = h > 0
                masks.append(mask)
                h = np.where(mask, h, 0.0).astype(np.float32)
        # Backward: d logit / d x (raw), then chain to the standardised input.
        g: npt.NDArray[np.float32] = self._kernels[-1][:, 0].copy()
        for i in range(last - 1, -1, -1):
            g = (g * masks[i]).astype(np.float32)
            g = self._kernels[i] @ g
        if self._wide is not None:
            g = g + self._wide
        if self._clip:  # x is already the clipped standardised row, g its gradient
            clipped: F32 = (x * g).astype(np.float32)
            return clipped
        if self._mean is not None and self._std is not None:
            z = (x - self._mean) / self._std
            grad_z = g * self._std  # d/dz = d/dx * dx/dz, x = z * s + m
            out: F32 = (z * grad_z).astype(np.float32)
            return out
        raw: F32 = (x * g).astype(np.float32)
        return raw

    def explain(
        self, row: npt.ArrayLike, columns: Sequence[str], top_k: int = 5
    ) -> list[tuple[str, float]]:
        """Top ``top_k`` ``(column, contribution)`` by absolute gradient x input."""
        if len(columns) != self.n_features:
            raise ValueError(f"{len(columns)} column names for {self.n_features} features")
        contrib = self.gradient_x_input(row)
        order = np.argsort(-np.abs(contrib), kind="stable")[: max(top_k, 0)]
        return [(str(columns[i]), float(contrib[i])) for i in order]
