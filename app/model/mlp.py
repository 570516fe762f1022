"""The Flax NNX multi-layer perceptron that scores feature rows."""

from __future__ import annotations

import itertools
import logging

import jax
from flax import nnx

from app.model.config import ModelConfig

__all__ = ["MLP", "build_model"]

logger = logging.getLogger(__name__)


class MLP(nnx.Module):
    """Stack of ``Linear + relu`` layers followed by a Linear head with one logit.

    Parameters
    ----------
    n_features : int
        Input width.
    hidden : tuple of int
        Hidden layer widths.
    rngs : nnx.Rngs
        Random streams for initialisation (deterministic for a given seed).
    """

    def __init__(self, n_features: int, hidden: tuple[int, ...], *, rngs: nnx.Rngs) -> None:
        sizes = (n_features, *hidden, 1)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return logits of shape ``x.shape[:-1]``."""
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = nnx.relu(x)
        return x[..., 0]

    def linears(self) -> list[nnx.Linear]:
        """The Linear layers from input to head (the canonical parameter order)."""
        return list(self.layers)


def build_model(config: ModelConfig, seed: int | None = None) -> MLP:
    """Build a freshly initialised model, deterministic for ``seed`` (default: config.seed)."""
    rngs = nnx.Rngs(config.seed if seed is None else seed)
    return MLP(config.n_features, config.hidden, rngs=rngs)
