"""Local training and batched prediction (pure JAX/optax over the NNX model).

Performance notes
-----------------
- One epoch is shuffled on the host with a seeded NumPy generator, padded to a whole
  number of batches (padding rows carry weight 0) and reshaped to ``(n_batches, B, F)``.
- Minibatches run inside ``jax.lax.scan`` over chunks of 64, 8 or 1 batches, so an epoch
  costs a handful of dispatches and there is no host<->device sync per step. The jitted
  chunk function compiles at most once per ``(chunk, batch_size)`` shape and is cached
  across calls (keyed by architecture and optimiser hyper-parameters, not by seed).
- The loss is accumulated on device and read back once at the end.

Optimizer state across rounds
-----------------------------
:func:`train` returns the Adam moments it ended with (``TrainResult.opt_state``, host
arrays) and takes them back next round (``opt_state``), so a learner's Adam continues
from round to round instead of starting fresh each time (``carry-optimizer``, see
:class:`app.fl.config.FLConfig`). A fresh Adam moves every weight by about one learning
rate per step in its first steps, whatever the size of its gradient; with a few rare
positives per silo and round, those moves follow each silo's noise, and FedAvg then
averages three noisy models.
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
from app.model.params import layout_for, validate_arrays
from app.model.standardize import standardize

__all__ = ["OptState", "TrainResult", "predict", "prepare_rows", "train", "weighted_bce"]

logger = logging.getLogger(__name__)

_CHUNKS = (64, 8, 1)
_PREDICT_MAX_ROWS = 8192

ChunkFn = Callable[..., tuple[Any, Any, jax.Array, jax.Array]]

OptState = list[np.ndarray]
"""The optimizer state between rounds: the leaves of optax's Adam state, as host arrays."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    arrays : list of np.ndarray
        Updated parameters (float32, canonical order).
    n_examples : int
        Labelled rows used per epoch (the FedAvg weight).
    loss_mean : float
        Mean weighted BCE per labelled example over all steps (NaN if nothing trained).
    seconds : float
        Wall-clock time of the call.
    opt_state : list of np.ndarray or None
        The optimizer state after the last step (the one passed in when nothing was
        trained), to continue from in the next call.
    """

    arrays: list[np.ndarray]
    n_examples: int
    loss_mean: float
    seconds: float
    opt_state: OptState | None = None


def weighted_bce(logits: jax.Array, y: jax.Array, pos_weight: float) -> jax.Array:
    """Per-example BCE with logits, positives weighted by ``pos_weight``."""
    return -(pos_weight * y * jax.nn.log_sigmoid(logits) + (1.0 - y) * jax.nn.log_sigmoid(-logits))


def prepare_rows(
    X: npt.ArrayLike,
    config: ModelConfig,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """Validate rows against ``config`` and standardise them when mean/std are given."""
    x = np.asarray(X, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != config.n_features:
        raise ValueError(f"expected rows of shape (n, {config.n_features}), got {x.shape}")
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither")
    if mean is not None and std is not None:
        x = standardize(x, mean, std)
        if config.input_clip > 0:
            x = np.clip(x, -config.input_clip, config.input_clip)
    return np.ascontiguousarray(x)


@functools.lru_cache(maxsize=16)
def _trainer(
    n_features: int,
    hidden: tuple[int, ...],
    module: str,
    learning_rate: float,
    weight_decay: float,
    pos_weight: float,
    proximal_mu: float,
) -> tuple[Callable[[Any], Any], ChunkFn]:
    """Jitted optimiser init and jitted ``scan`` over a chunk of minibatches."""
    layout = layout_for(n_features, hidden, module)
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(
        params: list[jax.Array],
        gparams: list[jax.Array],
        xb: jax.Array,
        yb: jax.Array,
        wb: jax.Array,
        shift: jax.Array,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        per_example = weighted_bce(layout.logits(params, xb) + shift, yb, pos_weight)
        wsum = jnp.sum(wb)
        data_loss = jnp.sum(wb * per_example) / jnp.maximum(wsum, 1.0)
        total = data_loss
        if proximal_mu > 0.0:
            sq = sum(jnp.sum(jnp.square(p - g)) for p, g in zip(params, gparams, strict=True))
            total = total + 0.5 * proximal_mu * sq
        return total, (data_loss, wsum)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    Carry = tuple[list[jax.Array], Any, list[jax.Array], jax.Array]

    def step(
        carry: Carry, batch: tuple[jax.Array, jax.Array, jax.Array]
    ) -> tuple[Carry, tuple[jax.Array, jax.Array]]:
        params, opt_state, gparams, shift = carry
        grads, (data_loss, wsum) = grad_fn(params, gparams, *batch, shift)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, gparams, shift), (data_loss * wsum, wsum)

    @jax.jit
    def run_chunk(
        params: list[jax.Array],
        opt_state: Any,
        gparams: list[jax.Array],
        xs: jax.Array,
        ys: jax.Array,
        ws: jax.Array,
        shift: jax.Array,
    ) -> tuple[list[jax.Array], Any, jax.Array, jax.Array]:
        (params, opt_state, _, _), (losses, weights) = jax.lax.scan(
            step, (params, opt_state, gparams, shift), (xs, ys, ws)
        )
        return params, opt_state, jnp.sum(losses), jnp.sum(weights)

    return jax.jit(optimizer.init), run_chunk


def _chunks(n_batches: int) -> list[tuple[int, int]]:
    """Split ``n_batches`` into ``(start, size)`` chunks of sizes from ``_CHUNKS``."""
    out: list[tuple[int, int]] = []
    start = 0
    for size in _CHUNKS:
        while n_batches - start >= size:
            out.append((start, size))
            start += size
    return out


def _restore(template: Any, leaves: OptState | None) -> Any:
    """``leaves`` in the structure of ``template`` (a fresh state), or None if they do not fit."""
    if not leaves:
        return None
    fresh, treedef = jax.tree_util.tree_flatten(template)
    if len(fresh) != len(leaves) or any(
        np.size(a) != np.size(b) for a, b in zip(fresh, leaves, strict=True)
    ):
        logger.info("train: optimizer state does not fit this model, starting a fresh one")
        return None
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jnp.asarray(np.asarray(b).reshape(np.shape(a)), dtype=a.dtype)
            for a, b in zip(fresh, leaves, strict=True)
        ],
    )


def train(
    arrays: Sequence[np.ndarray],
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    config: ModelConfig,
    global_arrays: Sequence[np.ndarray] | None = None,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
    logit_shift: float = 0.0,
    opt_state: OptState | None = None,
) -> TrainResult:
    """Train locally from ``arrays`` on rows ``X`` with labels ``y``.

    Parameters
    ----------
    arrays : sequence of np.ndarray
        Starting parameters in canonical order (usually the received global model).
    X : array_like, shape (n, n_features)
        Raw (unstandardised) feature rows.
    y : array_like, shape (n,)
        Labels in {0, 1}; rows with a label < 0 (unknown) are excluded.
    config : ModelConfig
        Architecture and optimisation hyper-parameters.
    global_arrays : sequence of np.ndarray, optional
        Anchor of the FedProx term (default: ``arrays``); used only if ``proximal_mu > 0``.
    mean, std : array_like, optional
        Global standardisation applied to ``X`` before training.
    logit_shift : float
        Added to every logit in the loss only (logit adjustment): training rows whose
        class mix differs from the stream's by ``logit(train rate) - logit(stream rate)``
        then leave the model's own logit at the stream's base rate.
    opt_state : list of np.ndarray, optional
        The optimizer state a previous call returned (``TrainResult.opt_state``): Adam
        continues from it (its moments and step count) instead of starting fresh. A state
        that does not fit the model (other shapes) is ignored.

    Returns
    -------
    TrainResult
        Updated arrays, labelled row count, mean training loss and wall time.
    """
    t0 = time.perf_counter()
    validate_arrays(config, arrays)
    x = prepare_rows(X, config, mean, std)
    labels = np.asarray(y, dtype=np.float32).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} rows but {labels.shape[0]} labels")
    known = labels >= 0
    x, labels = x[known], labels[known]
    n = int(x.shape[0])
    start_arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    if n == 0 or config.epochs == 0:
        logger.info("train: nothing to do (labelled rows=%d, epochs=%d)", n, config.epochs)
        return TrainResult(start_arrays, n, float("nan"), time.perf_counter() - t0, opt_state)

    if global_arrays is not None:
        validate_arrays(config, global_arrays)
    init_opt, run_chunk = _trainer(
        config.n_features,
        config.hidden,
        config.module,
        float(config.learning_rate),
        float(config.weight_decay),
        float(config.pos_weight),
        float(config.proximal_mu),
    )
    params = [jnp.asarray(a) for a in start_arrays]
    anchor = global_arrays if global_arrays is not None else start_arrays
    gparams = [jnp.asarray(np.asarray(a, dtype=np.float32)) for a in anchor]
    state = init_opt(params)
    carried = _restore(state, opt_state)
    state = state if carried is None else carried

    bsz = config.batch_size
    n_batches = -(-n // bsz)
    epochs = config.epochs
    if config.steps > 0:
        epochs = min(config.max_epochs, max(1, -(-config.steps // n_batches)))
    wpad = np.zeros(n_batches * bsz, dtype=np.float32)
    wpad[:n] = 1.0
    plan = _chunks(n_batches)
    w_chunks = [jnp.asarray(wpad.reshape(n_batches, bsz)[s : s + k]) for s, k in plan]
    rng = np.random.default_rng(config.seed)
    shift = jnp.asarray(logit_shift, jnp.float32)
    loss_sum: jax.Array = jnp.zeros((), jnp.float32)
    weight_sum: jax.Array = jnp.zeros((), jnp.float32)
    for _epoch in range(epochs):
        perm = rng.permutation(n)
        # Fresh host buffers every epoch: on CPU, JAX may alias host memory zero-copy and
        # runs asynchronously, so a buffer handed to it must never be mutated afterwards.
        xpad = np.zeros((n_batches * bsz, config.n_features), dtype=np.float32)
        ypad = np.zeros(n_batches * bsz, dtype=np.float32)
        np.take(x, perm, axis=0, out=xpad[:n])
        np.take(labels, perm, out=ypad[:n])
        xs = xpad.reshape(n_batches, bsz, config.n_features)
        ys = ypad.reshape(n_batches, bsz)
        for (s, k), wc in zip(plan, w_chunks, strict=True):
            params, state, ls, wsum = run_chunk(
                params, state, gparams, xs[s : s + k], ys[s : s + k], wc, shift
            )
            loss_sum = loss_sum + ls
            weight_sum = weight_sum + wsum
    out_arrays = [np.asarray(p, dtype=np.float32) for p in jax.device_get(params)]
    out_state = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(state))]
    loss_mean = float(loss_sum) / max(float(weight_sum), 1.0)
    seconds = time.perf_counter() - t0
    logger.debug(
        "train: %d rows x %d epochs in %.3fs (%.0f samples/s), loss %.4f",
        n,
        epochs,
        seconds,
        n * epochs / max(seconds, 1e-9),
        loss_mean,
    )
    return TrainResult(out_arrays, n, loss_mean, seconds, out_state)


@functools.lru_cache(maxsize=16)
def _predictor(n_features: int, hidden: tuple[int, ...], module: str) -> Callable[..., jax.Array]:
    layout = layout_for(n_features, hidden, module)

    @jax.jit
    def probs(params: list[jax.Array], x: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(layout.logits(params, x) + offset)

    return probs


def _bucket(n: int) -> int:
    """Padded row count: next power of two, at least 8, at most ``_PREDICT_MAX_ROWS``."""
    return int(min(_PREDICT_MAX_ROWS, max(8, 1 << max(n - 1, 0).bit_length())))


def predict(
    arrays: Sequence[np.ndarray],
    X: npt.ArrayLike,
    config: ModelConfig,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
    offset: npt.ArrayLike = 0.0,
) -> npt.NDArray[np.float32]:
    """Probabilities of the positive class for rows ``X`` (float32, shape ``(n,)``).

    Rows are standardised with ``mean``/``std`` when given and scored in chunks padded to
    power-of-two sizes, so the jitted forward pass compiles for a few shapes only.
    ``offset`` (a number or one per row) is added to the logits: a silo's base-rate
    correction (:func:`app.fl.rounds.silo_offsets`).
    """
    validate_arrays(config, arrays)
    x = prepare_rows(X, config, mean, std)
    n = int(x.shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    fn = _predictor(config.n_features, config.hidden, config.module)
    params = [jnp.asarray(np.asarray(a, dtype=np.float32)) for a in arrays]
    offsets = np.broadcast_to(np.asarray(offset, dtype=np.float32), (n,))
    outs: list[jax.Array] = []
    for start in range(0, n, _PREDICT_MAX_ROWS):
        part = x[start : start + _PREDICT_MAX_ROWS]
        off = np.zeros(_bucket(part.shape[0]), dtype=np.float32)
        off[: part.shape[0]] = offsets[start : start + part.shape[0]]
        size = _bucket(part.shape[0])
        if size != part.shape[0]:
            part = np.concatenate(
                [part, np.zeros((size - part.shape[0], x.shape[1]), dtype=np.float32)]
            )
        outs.append(fn(params, part, off))
    host = [np.asarray(o) for o in jax.device_get(outs)]
    return np.concatenate(host)[:n].astype(np.float32, copy=False)
