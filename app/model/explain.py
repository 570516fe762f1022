"""Per-feature explanations of a single score (gradient x input) for the chatbot."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from app.model.config import ModelConfig
from app.model.params import layout_for, validate_arrays
from app.model.training import prepare_rows

__all__ = ["explain", "gradient_x_input"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _grad_fn(n_features: int, hidden: tuple[int, ...], module: str) -> Callable[..., jax.Array]:
    layout = layout_for(n_features, hidden, module)

    def logit(params: list[jax.Array], z: jax.Array) -> jax.Array:
        out: jax.Array = layout.logits(params, z[None, :])[0]
        return out

    @jax.jit
    def gxi(params: list[jax.Array], z: jax.Array) -> jax.Array:
        grad: jax.Array = jax.grad(logit, argnums=1)(params, z)
        return z * grad

    return gxi


def gradient_x_input(
    arrays: Sequence[np.ndarray],
    x_row: npt.ArrayLike,
    config: ModelConfig,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """``z * d logit / d z`` for the standardised row ``z`` (float32, one per feature)."""
    validate_arrays(config, arrays)
    z = prepare_rows(np.asarray(x_row, dtype=np.float32).reshape(1, -1), config, mean, std)[0]
    params = [jnp.asarray(np.asarray(a, dtype=np.float32)) for a in arrays]
    out = _grad_fn(config.n_features, config.hidden, config.module)(params, jnp.asarray(z))
    return np.asarray(out, dtype=np.float32)


def explain(
    arrays: Sequence[np.ndarray],
    x_row: npt.ArrayLike,
    config: ModelConfig,
    mean: npt.ArrayLike | None,
    std: npt.ArrayLike | None,
    columns: Sequence[str],
    top_k: int = 5,
) -> list[tuple[str, float]]:
    """Features that drove the score most, as ``(column, contribution)`` pairs.

    Contributions are gradient x input of the logit with respect to the standardised
    input; positive values push towards the positive (fraud) class. Sorted by absolute
    contribution, largest first.

    Parameters
    ----------
    arrays : sequence of np.ndarray
        Model parameters in canonical order.
    x_row : array_like, shape (n_features,)
        One raw feature row.
    config : ModelConfig
        Architecture of ``arrays``.
    mean, std : array_like or None
        Standardisation used by the model.
    columns : sequence of str
        Feature names, one per column.
    top_k : int
        How many features to return.
    """
    if len(columns) != config.n_features:
        raise ValueError(f"{len(columns)} column names for {config.n_features} features")
    contrib = gradient_x_input(arrays, x_row, config, mean, std)
    order = np.argsort(-np.abs(contrib), kind="stable")[: max(top_k, 0)]
    return [(str(columns[i]), float(contrib[i])) for i in order]
