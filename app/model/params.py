"""Model parameters as plain ``list[np.ndarray]`` in a stable order.

The canonical order is Flax's order of the ``nnx.Param`` leaves (sorted by path) with the
``kernel`` of each layer moved before its ``bias``. For the MLP that is layer by layer
from input to head, kernel then bias::

    [W0 (n_features, h0), b0 (h0,), W1 (h0, h1), b1 (h1,), ..., Wk (h_last, 1), bk (1,)]

This is the order of Flower ``ArrayRecord`` payloads and of the model frame; names are
the dotted paths (``"layers.0.kernel"``). Any module of :mod:`app.model.modules` gets
its order by the same rule.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from app.model.config import ModelConfig
from app.model.modules import DEFAULT_MODULE, ModuleError, build_module, module_class

__all__ = [
    "ParamLayout",
    "arrays_to_model",
    "head_bias_index",
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


def _path_name(path: Sequence[Any]) -> str:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    if keys and keys[-1] == "value":  # nnx.Param's own leaf
        keys = keys[:-1]
    return ".".join(str(k) for k in keys)


def _canonical_order(names: Sequence[str]) -> list[int]:
    """Flax leaf indices in canonical order: per parent, ``kernel`` before the rest."""
    first_of_parent: dict[str, int] = {}
    keys = []
    for i, name in enumerate(names):
        parent, _, leaf = name.rpartition(".")
        first = first_of_parent.setdefault(parent, i)
        keys.append((first, 0 if leaf == "kernel" else 1, i))
    return [k[2] for k in sorted(keys)]


def _split_params(model: nnx.Module) -> tuple[Any, Any]:
    try:
        graphdef, state = nnx.split(model, nnx.Param)
    except ValueError as exc:  # state other than nnx.Param (batch stats, rng streams)
        raise ModuleError(
            f"model {type(model).__name__} must keep all its state in nnx.Param: {exc}"
        ) from None
    return graphdef, state


@dataclass(frozen=True)
class ParamLayout:
    """Bridge between the canonical list of arrays and Flax's graph/state split.

    Lets jit-compiled pure functions take ``list[Array]`` parameters and still run the
    single NNX model definition (``nnx.merge`` happens at trace time only).

    Attributes
    ----------
    graphdef : nnx.GraphDef
        Static structure of the module.
    treedef : Any
        PyTree structure of the ``nnx.Param`` state.
    leaf_to_canonical : tuple of int
        For each state leaf (Flax order), its index in the canonical list.
    names : tuple of str
        Parameter names in canonical order.
    shapes : tuple of tuple of int
        Parameter shapes in canonical order.
    """

    graphdef: Any
    treedef: Any
    leaf_to_canonical: tuple[int, ...]
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

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
def layout_for(
    n_features: int, hidden: tuple[int, ...], module: str = DEFAULT_MODULE
) -> ParamLayout:
    """Cached :class:`ParamLayout` for an architecture (no parameters are allocated)."""
    config = ModelConfig(n_features=n_features, hidden=hidden, module=module)
    abstract = nnx.eval_shape(lambda: build_module(config))
    graphdef, state = _split_params(abstract)
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    flax_names = [_path_name(path) for path, _leaf in path_leaves]
    order = _canonical_order(flax_names)  # canonical position -> flax leaf
    leaf_to_canonical = [0] * len(order)
    for canonical, leaf in enumerate(order):
        leaf_to_canonical[leaf] = canonical
    if not order:
        raise ModuleError(f"model {module!r} has no nnx.Param to train")
    return ParamLayout(
        graphdef=graphdef,
        treedef=treedef,
        leaf_to_canonical=tuple(leaf_to_canonical),
        names=tuple(flax_names[i] for i in order),
        shapes=tuple(tuple(int(d) for d in path_leaves[i][1].shape) for i in order),
    )


def _layout(config: ModelConfig) -> ParamLayout:
    return layout_for(config.n_features, config.hidden, config.module)


def param_shapes(config: ModelConfig) -> list[tuple[int, ...]]:
    """Expected shapes in canonical order (kernel then bias per layer)."""
    return list(_layout(config).shapes)


def param_names(config: ModelConfig) -> list[str]:
    """Names in canonical order, e.g. ``["layers.0.kernel", "layers.0.bias", ...]``."""
    return list(_layout(config).names)


def _describe(config: ModelConfig) -> str:
    if config.module == DEFAULT_MODULE:
        return f"layer sizes {config.layer_sizes}"
    return f"model {config.module} with {config.n_features} features"


def validate_arrays(config: ModelConfig, arrays: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` if ``arrays`` do not match the architecture of ``config``."""
    layout = _layout(config)
    if len(arrays) != len(layout.shapes):
        raise ValueError(
            f"expected {len(layout.shapes)} parameter arrays for {_describe(config)}, "
            f"got {len(arrays)}"
        )
    for name, arr, shape in zip(layout.names, arrays, layout.shapes, strict=True):
        if tuple(np.shape(arr)) != shape:
            raise ValueError(
                f"parameter {name}: expected shape {shape}, got {tuple(np.shape(arr))} "
                f"({_describe(config)})"
            )


def model_to_arrays(model: nnx.Module) -> list[np.ndarray]:
    """Copy the model parameters to host ``float32`` arrays in canonical order."""
    _graphdef, state = _split_params(model)
    path_leaves, _treedef = jax.tree_util.tree_flatten_with_path(state)
    order = _canonical_order([_path_name(path) for path, _leaf in path_leaves])
    return [np.asarray(path_leaves[i][1], dtype=np.float32) for i in order]


def init_arrays(config: ModelConfig) -> list[np.ndarray]:
    """Freshly initialised parameters for ``config`` (deterministic for ``config.seed``)."""
    return model_to_arrays(build_module(config))


def head_bias_index(config: ModelConfig) -> int | None:
    """Canonical index of the output bias (shape ``(1,)``), None if the model has none.

    A module may name it (class attribute ``head_bias = "path.bias"``); otherwise it is
    the last parameter when that has shape ``(1,)`` (the MLP's head bias).
    """
    layout = _layout(config)
    named = getattr(module_class(config.module), "head_bias", None)
    if isinstance(named, str):
        if named not in layout.names:
            raise ModuleError(f"model {config.module}: head_bias {named!r} is no parameter")
        index = layout.names.index(named)
    else:
        index = len(layout.names) - 1
    return index if layout.shapes[index] == (1,) else None


def with_prior(
    arrays: Sequence[np.ndarray], prior: float, config: ModelConfig | None = None
) -> list[np.ndarray]:
    """``arrays`` with the head bias set to ``logit(prior)``; ``prior`` 0 leaves them as is.

    A fresh model scores every row about 0.5. On rare positives its first optimiser steps
    mostly pull the scores down, and Adam does that through the weights faster than
    through the single head bias, so rows with large activations (the outliers, often
    the positives) drop furthest: for a few short rounds the ranking is inverted
    (ROC AUC well below 0.5). Starting the head at the base rate's log-odds avoids it.
    The head bias is the last array, or :func:`head_bias_index` of ``config`` (a model
    without one keeps its arrays).
    """
    if not 0.0 <= prior < 1.0:
        raise ValueError(f"prior must be in [0, 1), got {prior}")
    out = [np.array(a, dtype=np.float32) for a in arrays]
    index: int | None = -1 if config is None else head_bias_index(config)
    if prior > 0.0 and index is not None:
        out[index] = np.full_like(out[index], np.log(prior / (1.0 - prior)))
    elif prior > 0.0 and config is not None:
        logger.info("model %s has no head bias of shape (1,): no base-rate prior", config.module)
    return out


def arrays_to_model(config: ModelConfig, arrays: Sequence[np.ndarray]) -> nnx.Module:
    """Build the module of ``config`` holding ``arrays`` (validated against ``config``)."""
    validate_arrays(config, arrays)
    layout = _layout(config)
    params = [jnp.asarray(np.asarray(a, dtype=np.float32)) for a in arrays]
    model: nnx.Module = nnx.merge(layout.graphdef, layout.to_state(params))
    return model
