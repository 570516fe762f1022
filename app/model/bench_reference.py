"""Plain JAX/optax training loop used as a throughput reference for :func:`train`.

This is deliberately the simplest idiomatic loop (as in Flower's quickstart-jax): a pure
MLP forward over the canonical parameter list, one ``jax.jit`` step per minibatch and a
Python ``for`` loop. A benchmark divides :func:`app.model.training.train` throughput by
this one (target ratio >= 0.8).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax

from app.model.config import ModelConfig
from app.model.params import init_arrays
from app.model.training import train, weighted_bce

__all__ = ["BenchResult", "compare_throughput", "plain_jax_train_loop"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchResult:
    """Result of :func:`plain_jax_train_loop`."""

    arrays: list[np.ndarray]
    n_examples: int
    seconds: float


def _forward(params: Sequence[jax.Array], x: jax.Array) -> jax.Array:
    n_layers = len(params) // 2
    for i in range(n_layers):
        x = x @ params[2 * i] + params[2 * i + 1]
        if i < n_layers - 1:
            x = jax.nn.relu(x)
    return x[..., 0]


@functools.lru_cache(maxsize=8)
def _plain_step(
    learning_rate: float, weight_decay: float, pos_weight: float
) -> tuple[optax.GradientTransformation, Callable[..., tuple[Any, Any]]]:
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(params: list[jax.Array], xb: jax.Array, yb: jax.Array) -> jax.Array:
        return jnp.mean(weighted_bce(_forward(params, xb), yb, pos_weight))

    @jax.jit
    def step(params: list[jax.Array], opt_state: Any, xb: jax.Array, yb: jax.Array) -> Any:
        grads = jax.grad(loss_fn)(params, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return optimizer, step


def plain_jax_train_loop(
    arrays: Sequence[np.ndarray],
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    config: ModelConfig,
) -> BenchResult:
    """Train with a plain per-batch jitted step (no padding; last partial batch kept).

    Rows are assumed already standardised and labelled (no unknown-label filtering).
    """
    t0 = time.perf_counter()
    x = np.asarray(X, dtype=np.float32)
    labels = np.asarray(y, dtype=np.float32)
    optimizer, step = _plain_step(
        float(config.learning_rate), float(config.weight_decay), float(config.pos_weight)
    )
    params = [jnp.asarray(a) for a in arrays]
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(config.seed)
    n = x.shape[0]
    for _ in range(config.epochs):
        perm = rng.permutation(n)
        for s in range(0, n, config.batch_size):
            idx = perm[s : s + config.batch_size]
            params, opt_state = step(params, opt_state, x[idx], labels[idx])
    out = [np.asarray(p, dtype=np.float32) for p in jax.device_get(params)]
    return BenchResult(out, n, time.perf_counter() - t0)


def compare_throughput(
    n_rows: int = 10_000,
    n_features: int = 40,
    batch_size: int = 256,
    epochs: int = 1,
    repeats: int = 21,
    seed: int = 0,
) -> dict[str, float]:
    """Samples/s of :func:`train` vs the plain loop on synthetic rows (after warm-up).

    ``ratio`` is median-based (ours / plain throughput); ``ratio_best`` uses best times.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    w = rng.normal(size=n_features)
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-(X @ w)))).astype(np.float32)
    config = ModelConfig(n_features=n_features, batch_size=batch_size, epochs=epochs, seed=seed)
    arrays = init_arrays(config)
    train(arrays, X, y, config)
    plain_jax_train_loop(arrays, X, y, config)
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(repeats):  # interleaved, so background load hits both alike
        ours.append(train(arrays, X, y, config).seconds)
        plain.append(plain_jax_train_loop(arrays, X, y, config).seconds)
    samples = float(n_rows * epochs)
    med_ours, med_plain = float(np.median(ours)), float(np.median(plain))
    result = {
        "train_samples_per_s": samples / med_ours,
        "plain_samples_per_s": samples / med_plain,
        "ratio": med_plain / med_ours,
        "train_best_samples_per_s": samples / min(ours),
        "plain_best_samples_per_s": samples / min(plain),
        "ratio_best": min(plain) / min(ours),
    }
    logger.info("throughput at batch %d: %s", batch_size, result)
    return result
