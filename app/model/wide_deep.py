"""Wide & deep: a linear path from the inputs to the logit beside the MLP.

On rare-event streams with few positives a plain logistic regression on standardised
inputs (River's online learner) ranks well early, while an MLP needs more positives;
the sum of both lets the linear part carry the signal from the first rounds and the MLP
add the interactions it finds. The wide path starts at zero, so a fresh model is the MLP.

The linear term is ``WIDE_SCALE * (x @ w)`` (:mod:`app.model.config`): under Adam a
parameter moves about one learning rate per step whatever its gradient, so the factor is
a learning-rate multiplier for the linear path (10: the best of 3 / 10 / 30 / 100 on the
UCI stream of ``bench quality``). A logistic regression needs larger steps than the MLP's
weights to rank well within the first rounds.
"""

from __future__ import annotations

import logging

import jax
from flax import nnx

from app.model.config import WIDE_SCALE
from app.model.mlp import MLP

__all__ = ["WideDeep"]

logger = logging.getLogger(__name__)


class WideDeep(nnx.Module):
    """``logit = WIDE_SCALE * (x @ w) + MLP(x)``; no bias on the linear path (the MLP's head
    bias is the output's).

    Parameters
    ----------
    n_features : int
        Input width.
    hidden : tuple of int
        Hidden layer widths of the MLP path.
    rngs : nnx.Rngs
        Random streams for initialisation.

    Attribute names order the canonical parameters as ``[linear.kernel, mlp...]``, so the
    head bias of the MLP is the last parameter (the base-rate prior goes there).
    """

    def __init__(self, n_features: int, hidden: tuple[int, ...], *, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(
            n_features, 1, use_bias=False, kernel_init=nnx.initializers.zeros_init(), rngs=rngs
        )
        self.mlp = MLP(n_features, hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return logits of shape ``x.shape[:-1]``."""
        out: jax.Array = WIDE_SCALE * self.linear(x)[..., 0] + self.mlp(x)
        return out
