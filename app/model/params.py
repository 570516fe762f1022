"""Model parameters as plain ``list[np.ndarray]`` in a stable order.

The canonical order is layer by layer from input to head, kernel then bias::

    [W0 (n_features, h0), b0 (h0,), W1 (h0, h1), b1 (h1,), ..., Wk (h_last, 1), bk (1,)]

This is the order of Flower ``ArrayRecord`` payloads and of the model frame. Flax's own
state flattening order (alphabetical: bias before kernel) is never exposed.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx

from app.model.config import ModelConfig
from app.model.mlp import MLP, build_model

__all__ = [
    "ParamLayout",
    "arrays_to_model",
    "init_arrays",
    "layout_for",
    "model_to_arrays",
    "param_names",
    "param_shapes",
    "validate_arrays",
    "with_prior",
]

logger = logging.getLogger(__name__)

LogitFn = Callable[[Sequence[jax.Array], jax.Array], jax.Array]


def param_shapes(config: ModelConfig) -> list[tuple[int, ...]]:
    """Expected shapes in canonical order (kernel then bias per layer)."""
    sizes = config.layer_sizes
    shapes: list[tuple[int, ...]] = []
    for a, b in itertools.pairwise(sizes):
        shapes.extend([(a, b), (b,)])
    return shapes


def param_names(config: ModelConfig) -> list[str]:
    """Names in canonical order, e.g. ``["layers.0.kernel", "layers.0.bias", ...]``."""
    n_layers = len(config.layer_sizes) - 1
    return [f"layers.{i}.{kind}" for i in range(n_layers) for kind in ("kernel", "bias")]


def validate_arrays(config: ModelConfig, arrays: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` if ``arrays`` do not match the architecture of ``config``."""
    expected = param_shapes(config)
    if len(arrays) != len(expected):
        raise ValueError(
            f"expected {len(expected)} parameter arrays for layer sizes "
            f"{config.layer_sizes}, got {len(arrays)}"
        )
    names = param_names(config)
    for name, arr, shape in zip(names, arrays, expected, strict=True):
        if tuple(np.shape(arr)) != shape:
            raise ValueError(
                f"parameter {name}: expected shape {shape}, got {tuple(np.shape(arr))} "
                f"(layer sizes {config.layer_sizes})"
            )


def model_to_arrays(model: MLP) -> list[np.ndarray]:
    """Copy the model parameters to host ``float32`` arrays in canonical order."""
    out: list[np.ndarray] = []
    for layer in model.linears():
        if layer.bias is None:  # pragma: no cover - MLP always uses biases
            raise ValueError("MLP layers must have a bias")
        out.append(np.asarray(layer.kernel[...], dtype=np.float32))
        out.append(np.asarray(layer.bias[...], dtype=np.float32))
    return out


def init_arrays(config: ModelConfig) -> list[np.ndarray]:
    """Freshly initialised parameters for ``config`` (deterministic for ``config.seed``)."""
    return model_to_arrays(build_model(config))


def with_prior(arrays: Sequence[np.ndarray], prior: float) -> list[np.ndarray]:
    """``arrays`` with the head bias set to ``logit(prior)``; ``prior`` 0 leaves them as is.

    A fresh model scores every row about 0.5. On rare positives its first optimiser steps
    mostly pull the scores down, and Adam does that through the weights faster than
    through the single head bias, so rows with large activations (the outliers, often
    the positives) drop furthest: for a few short rounds the ranking is inverted
    (ROC AUC well below 0.5). Starting the head at the base rate's log-odds avoids it.
    """
    if not 0.0 <= prior < 1.0:
        raise ValueError(f"prior must be in [0, 1), got {prior}")
    out = [np.array(a, dtype=np.float32) for a in arrays]
    if prior > 0.0:
        out[-1] = np.full_like(out[-1], np.log(prior / (1.0 - prior)))
    return out


def arrays_to_model(config: ModelConfig, arrays: Sequence[np.ndarray]) -> MLP:
    """Build an :class:`MLP` holding ``arrays`` (validated against ``config``)."""
    validate_arrays(config, arrays)
    model = build_model(config)
    for i, layer in enumerate(model.linears()):
        layer.kernel[...] = np.asarray(arrays[2 * i], dtype=np.float32)
        if layer.bias is None:  # pragma: no cover - MLP always uses biases
            raise ValueError("MLP layers must have a bias")
        layer.bias[...] = np.asarray(arrays[2 * i + 1], dtype=np.float32)
    return model


@dataclass(frozen=True)
class ParamLayout:
    """Bridge between the canonical list of arrays and Flax's graph/state split.

    Lets jit-compiled pure functions take ``list[Array]`` parameters and still run the
    single NNX model definition (``nnx.merge`` happens at trace time only).

    Attributes
    ----------
    graphdef : nnx.GraphDef
        Static structure of the :class:`MLP`.
    treedef : Any
        PyTree structure of the ``nnx.Param`` state.
    leaf_to_canonical : tuple of int
        For each state leaf (Flax order), its index in the canonical list.
    """

    graphdef: Any
    treedef: Any
    leaf_to_canonical: tuple[int, ...]

    def to_state(self, params: Sequence[Any]) -> Any:
        """Canonical list of (possibly traced) arrays -> ``nnx.State``."""
        leaves = [params[i] for i in self.leaf_to_canonical]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def logits(self, params: Sequence[jax.Array], x: jax.Array) -> jax.Array:
        """Pure forward pass: logits for rows ``x`` (use inside ``jax.jit``)."""
        model = nnx.merge(self.graphdef, self.to_state(params))
        out: jax.Array = model(x)
        return out


@functools.lru_cache(maxsize=32)
def layout_for(n_features: int, hidden: tuple[int, ...]) -> ParamLayout:
    """Cached :class:`ParamLayout` for an architecture (no parameters are allocated)."""
    config = ModelConfig(n_features=n_features, hidden=hidden)
    abstract = nnx.eval_shape(lambda: build_model(config))
    graphdef, state = nnx.split(abstract, nnx.Param)
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    canonical = {name: i for i, name in enumerate(param_names(config))}
    order: list[int] = []
    for path, _leaf in path_leaves:
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        # path looks like ('layers', i, 'kernel'|'bias', 'value')
        name = f"{keys[0]}.{keys[1]}.{keys[2]}"
        if name not in canonical:
            raise RuntimeError(f"unexpected parameter path {keys} in MLP state")
        order.append(canonical[name])
    if sorted(order) != list(range(len(canonical))):
        raise RuntimeError("MLP state does not cover the canonical parameter list")
    return ParamLayout(graphdef=graphdef, treedef=treedef, leaf_to_canonical=tuple(order))
