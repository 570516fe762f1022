"""Score rows with a published model: the NumPy MLP fast path, JAX for any other module.

The stream worker and the chatbot score one row at a time. The built-in MLP has a
pure-NumPy forward pass (:class:`app.model.numpy_forward.NumpyMLP`, a few µs per row, no
JAX import); any other module (:mod:`app.model.modules`) is scored by the jitted JAX
forward of :func:`app.model.training.predict` (about 0.1 ms per row). Both have the same
small interface, :class:`Scorer`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.model.config import WIDE_SCALE, ModelConfig
from app.model.frame import ModelFrame
from app.model.numpy_forward import NumpyMLP

__all__ = ["JaxScorer", "Scorer", "frame_scorer", "scorer_for"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class Scorer(Protocol):
    """What the stream needs of a model: probabilities and explanations of raw rows.

    ``score``'s ``offset`` is added to the logit: a silo's base-rate correction
    (:func:`app.model.frame.silo_offsets_of`).
    """

    n_features: int

    def predict(self, X: npt.ArrayLike) -> F32: ...

    def score(self, row: npt.ArrayLike, offset: float = 0.0) -> float: ...

    def explain(
        self, row: npt.ArrayLike, columns: Sequence[str], top_k: int = 5
    ) -> list[tuple[str, float]]: ...


class JaxScorer:
    """Scores rows with any module through its JAX forward pass (standardisation included).

    Parameters
    ----------
    config : ModelConfig
        Architecture (``module``, ``n_features``, ``hidden``) of ``arrays``.
    arrays : sequence of np.ndarray
        Parameters in canonical order.
    mean, std : array_like or None
        Standardisation of the raw rows (both or neither).
    """

    def __init__(
        self,
        config: ModelConfig,
        arrays: Sequence[np.ndarray],
        mean: npt.ArrayLike | None = None,
        std: npt.ArrayLike | None = None,
    ) -> None:
        from app.model.params import validate_arrays

        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std, or neither")
        validate_arrays(config, arrays)
        self.config = config
        self.n_features = config.n_features
        self._arrays = [np.array(a, dtype=np.float32) for a in arrays]
        self._mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self._std = None if std is None else np.asarray(std, dtype=np.float32)

    def predict(self, X: npt.ArrayLike, offset: float = 0.0) -> F32:
        """Probabilities of the positive class for raw rows ``X`` (shape ``(n,)``)."""
        from app.model.training import predict

        rows = np.atleast_2d(np.asarray(X, dtype=np.float32))
        return predict(self._arrays, rows, self.config, self._mean, self._std, offset=offset)

    def score(self, row: npt.ArrayLike, offset: float = 0.0) -> float:
        """Probability of one raw row (a Python float); ``offset`` is added to its logit."""
        return float(self.predict(np.asarray(row, dtype=np.float32).reshape(1, -1), offset)[0])

    def explain(
        self, row: npt.ArrayLike, columns: Sequence[str], top_k: int = 5
    ) -> list[tuple[str, float]]:
        """Top ``top_k`` ``(column, contribution)`` by absolute gradient x input."""
        from app.model.explain import explain

        return explain(self._arrays, row, self.config, self._mean, self._std, columns, top_k)


def scorer_for(
    config: ModelConfig,
    arrays: Sequence[np.ndarray],
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
    *,
    import_code: bool = True,
) -> Scorer:
    """The scorer of a model: :class:`NumpyMLP` for the MLP, :class:`JaxScorer` otherwise.

    ``import_code=False`` refuses a module this process has not imported already (see
    :func:`app.model.modules.module_class`).

    Raises
    ------
    ValueError
        If the arrays do not fit the architecture or the module is unknown.
    """
    if config.module == "mlp":
        return NumpyMLP(arrays, mean, std, clip=config.input_clip)  # validates the layers
    if config.module == "wide-deep":  # [linear.kernel, MLP arrays...] (app.model.wide_deep)
        kernel = np.asarray(arrays[0], dtype=np.float32) if arrays else np.zeros((0, 0))
        if kernel.ndim != 2 or kernel.shape[1] != 1:
            raise ValueError(f"wide-deep: linear kernel shape {kernel.shape} != (n, 1)")
        return NumpyMLP(
            arrays[1:], mean, std, wide=WIDE_SCALE * kernel[:, 0], clip=config.input_clip
        )
    from app.model.modules import module_class

    module_class(config.module, import_code=import_code)  # fails before any import
    return JaxScorer(config, arrays, mean, std)


def frame_scorer(frame: ModelFrame, *, import_code: bool = False) -> Scorer:
    """The scorer of a decoded model frame (the module its config names)."""
    return scorer_for(
        frame.meta.model_config(), frame.arrays, frame.mean, frame.std, import_code=import_code
    )
