"""Pure round logic shared by the ClientApp, the ServerApp, the baseline and the benchmark.

No flwr and no Kafka here: a silo's prequential round (score the new rows with the model
it received, then train), the server-side merge of evaluations and standardisation
statistics, the round-metrics document for ``fl.metrics`` and the idle backoff.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from app.model.metrics import N_BINS, ScoreHistogram, merge_histograms
from app.model.replay import ReplayBuffer
from app.model.standardize import MomentStats

if TYPE_CHECKING:
    from app.model.config import ModelConfig

__all__ = [
    "Backoff",
    "RoundPolicy",
    "SiloEvaluation",
    "SiloRoundResult",
    "base_rate",
    "prequential_round",
    "prior_shift",
    "rate_of",
    "round_metrics",
    "silo_offsets",
    "standardisation",
    "summary_of",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SiloRoundResult:
    """What one silo produced in one round (before it is put into a Flower reply).

    Attributes
    ----------
    arrays : list of np.ndarray
        Locally trained parameters (the received ones if nothing was trained).
    rows : int
        New rows read this round (labelled or not).
    n_examples : int
        Labelled rows trained on (the aggregation weight).
    histogram : ScoreHistogram
        Prequential evaluation: the received model's scores on the new labelled rows.
    moments : MomentStats
        Moments of the new rows (federated standardisation).
    train_loss : float
        Mean local training loss (NaN if nothing was trained).
    train_seconds, score_seconds : float
        Wall time of local training and of prequential scoring.
    scores : np.ndarray or None
        The prequential scores of the labelled rows (kept in-process only, for exact
        metrics in ``bench quality``; never put into a reply).
    replay : ReplayBuffer or None
        The silo's replay buffer after this round's rows (stays in the silo).
    trained_on_positives : bool
        Whether the rows trained on (new and replayed) held a positive: an update from
        negatives alone says nothing about the positive class (see
        :func:`app.fl.aggregation.informative`).
    opt_state : list of np.ndarray or None
        The local optimizer state after training (stays in the silo, like the replay
        buffer; the next round continues from it when ``carry-optimizer`` is on).
    """

    arrays: list[np.ndarray]
    rows: int
    n_examples: int
    histogram: ScoreHistogram
    moments: MomentStats
    train_loss: float
    train_seconds: float
    score_seconds: float
    scores: np.ndarray | None = None
    replay: ReplayBuffer | None = None
    trained_on_positives: bool = False
    opt_state: list[np.ndarray] | None = None


def standardisation(
    mean: npt.ArrayLike | None, std: npt.ArrayLike | None, X: npt.ArrayLike
) -> tuple[F32, F32]:
    """The global mean/std when known, else those of the rows themselves (first round)."""
    if mean is not None and std is not None:
        return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return MomentStats.from_rows(np.asarray(X)).mean_std()


def base_rate(labels: npt.ArrayLike) -> float:
    """Smoothed positive rate ``(pos + 0.5) / (n + 1)`` of known labels, in [1e-4, 0.5]."""
    y = np.asarray(labels).reshape(-1)
    return rate_of(int((y > 0).sum()), int(y.size))


def rate_of(positives: int, labelled: int) -> float:
    """:func:`base_rate` from counts: ``(positives + 0.5) / (labelled + 1)``, in [1e-4, 0.5]."""
    rate = (float(positives) + 0.5) / (labelled + 1.0)
    return float(min(0.5, max(1e-4, rate)))


def _log_odds(positives: float, n: float) -> float:
    rate = (positives + 0.5) / (n + 1.0)
    return math.log(rate / (1.0 - rate))


def prior_shift(train_labels: npt.ArrayLike, seen: tuple[int, int]) -> float:
    """Logit adjustment of a training set whose class mix is not the stream's.

    The replay buffer keeps a silo's rare positives (up to half of it) but only a sample
    of its negatives, so the rows a round trains on hold far more positives than the
    stream: on the synthetic bank 5 % instead of 0.3 %, and the model's base rate crept
    up round by round. With ``logit(train rate) - logit(stream rate)`` added to its
    logits in the loss, the model's own logit is fitted at the stream's rate (Bayes'
    rule for a changed class prior; Menon et al. 2021, "logit adjustment"), while the
    positives keep their full weight in the gradient. ``seen`` is ``(labelled,
    positives)`` of the silo's stream so far.
    """
    y = np.asarray(train_labels).reshape(-1)
    known = y[y >= 0]
    n, p = seen
    if known.size == 0 or n <= 0:
        return 0.0
    return _log_odds(float((known > 0).sum()), float(known.size)) - _log_odds(p, n)


def silo_offsets(counts: Mapping[int, tuple[int, int]]) -> dict[int, float]:
    """Each silo's base-rate correction of the shared model's logit (label-shift prior).

    ``counts`` maps a silo to ``(labelled, positives)`` seen so far. The shared model
    learns the positive rate of all silos together; a silo whose rate differs (non-IID
    silos: one branch sees five times the fraud of another) scores its rows with
    ``logit(rate_silo) - logit(rate_all)`` added, the Bayes correction for a changed
    class prior. With few positives a silo's rate is mostly noise, so each difference
    is shrunk by ``tau2 / (tau2 + v)`` (empirical Bayes): ``v`` is the sampling variance
    of the silo's log-odds, ``tau2`` the spread of the silos' log-odds beyond what
    sampling explains (0 when the silos look alike: no correction at all).
    Empty for a single silo or before any positive.
    """
    if len(counts) < 2:  # one silo: its rate is the global one
        return {}
    labelled = sum(n for n, _p in counts.values())
    positives = sum(p for _n, p in counts.values())
    if labelled <= 0 or positives <= 0:
        return {}
    rate = (positives + 0.5) / (labelled + 1.0)
    centre = math.log(rate / (1.0 - rate))
    diff, var = {}, {}
    for silo, (n, p) in counts.items():
        own = (p + 0.5) / (n + 1.0)
        diff[int(silo)] = math.log(own / (1.0 - own)) - centre
        var[int(silo)] = 1.0 / (p + 0.5) + 1.0 / (n - p + 0.5)
    tau2 = max(0.0, sum(d * d for d in diff.values()) / len(diff) - sum(var.values()) / len(var))
    return {s: tau2 / (tau2 + var[s]) * d for s, d in diff.items()}


def prequential_round(
    arrays: Sequence[np.ndarray],
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    config: ModelConfig,
    mean: npt.ArrayLike | None = None,
    std: npt.ArrayLike | None = None,
    n_bins: int = N_BINS,
    set_prior: bool = False,
    replay: ReplayBuffer | None = None,
    offset: npt.ArrayLike = 0.0,
    opt_state: list[np.ndarray] | None = None,
) -> SiloRoundResult:
    """Test-then-train on one batch of new rows.

    Parameters
    ----------
    arrays : sequence of np.ndarray
        The received global model (canonical order); also the FedProx anchor.
    X, y : array_like
        New raw feature rows and labels (-1 = unknown: not scored, not trained on).
    config : ModelConfig
        Local training hyper-parameters (``epochs`` 0 = score only).
    mean, std : array_like, optional
        Global standardisation; when absent, the rows' own statistics are used.
    n_bins : int
        Bins of the score histograms.
    set_prior : bool
        Start the head bias at the log-odds of these rows' base rate before training
        (the server asks for it while no silo has trained the model yet).
    replay : ReplayBuffer, optional
        The silo's earlier labelled rows: when this round has labelled rows, training
        uses them together with the buffer (so a few new positives do not make the
        model forget the earlier ones); the new rows are then added to it.
    offset : float or array_like
        Added to the logits of the prequential scores (a number, or one per row of
        ``X``): the silo's base-rate correction (:func:`silo_offsets`). Training does
        not see it: the shared model stays the one of all silos.
    opt_state : list of np.ndarray, optional
        The optimizer state this learner's previous round ended with
        (``SiloRoundResult.opt_state``): local training continues its Adam moments instead
        of starting a fresh optimizer (:func:`app.model.training.train`).

    Returns
    -------
    SiloRoundResult
        Trained arrays, counts, prequential histogram, moments and timings.
    """
    from app.model.params import with_prior
    from app.model.training import predict, train  # JAX: imported only when rows arrive

    x = np.asarray(X, dtype=np.float32)
    labels = np.asarray(y, dtype=np.float32).reshape(-1)
    m, s = standardisation(mean, std, x)
    known = labels >= 0
    t0 = time.perf_counter()
    scores = np.zeros(0, dtype=np.float32)
    if known.any():
        off = np.asarray(offset, dtype=np.float32)
        off = off[known] if off.ndim else off
        scores = predict(arrays, x[known], config, m, s, offset=off)
        histogram = ScoreHistogram.from_scores(scores, labels[known], n_bins)
    else:
        histogram = ScoreHistogram(n_bins)
    score_seconds = time.perf_counter() - t0
    start = list(arrays)
    if set_prior and known.any():
        start = with_prior(arrays, base_rate(labels[known]), config)
    tx, ty = x, labels
    shift = 0.0
    if replay is not None and replay.rows and known.any():
        tx = np.concatenate([x[known], replay.X])
        ty = np.concatenate([labels[known], replay.y])
        if config.prior_shift:
            n, p = replay.seen
            shift = prior_shift(ty, (n + int(known.sum()), p + int((labels > 0).sum())))
    # the FedProx anchor is the model this round starts from (with its prior, if set)
    result = train(
        start, tx, ty, config, global_arrays=start, mean=m, std=s, logit_shift=shift,
        opt_state=opt_state,
    )  # fmt: skip
    return SiloRoundResult(
        arrays=result.arrays,
        rows=int(x.shape[0]),
        n_examples=int(known.sum()) if result.n_examples else 0,  # new rows: FedAvg weight
        histogram=histogram,
        moments=MomentStats.from_rows(x) if x.shape[0] else MomentStats.empty(config.n_features),
        train_loss=result.loss_mean,
        train_seconds=result.seconds,
        score_seconds=score_seconds,
        scores=scores,
        replay=None if replay is None else replay.add(x, labels, seed=config.seed),
        trained_on_positives=bool(result.n_examples) and bool((ty > 0).any()),
        opt_state=result.opt_state,
    )


@dataclass(frozen=True)
class RoundPolicy:
    """How much data a round waits for and which silos take part.

    Round ``r`` waits for every silo to have ``target(r)`` new rows: ``first_round_rows``
    in round 1, doubling each round up to ``round_rows`` (small early rounds give a
    useful model quickly). A silo takes part with at least ``min_rows`` new rows and
    reads at most ``max_rows``. ``patience`` bounds the wait (in the bench: stream rows,
    as a multiple of ``n_silos * target``); ``first_ready`` is the old policy (the round
    closes as soon as one silo has ``target`` rows; only such silos take part).
    """

    round_rows: int = 1000
    first_round_rows: int = 250
    min_rows: int = 32
    max_rows: int = 10000
    patience: float = 2.0
    first_ready: bool = False

    def target(self, round_: int) -> int:
        """Rows per silo round ``round_`` (1-based) waits for."""
        grown = self.first_round_rows * 2 ** max(0, min(round_ - 1, 30))
        return int(max(self.min_rows, min(self.round_rows, grown)))


@dataclass(frozen=True)
class SiloEvaluation:
    """The aggregate-only part of one silo's reply, as the server sees it.

    ``trained_on_positives`` is None when the reply does not say (an older ClientApp).
    """

    silo: int
    rows: int
    n_examples: int
    histogram: ScoreHistogram
    train_loss: float = float("nan")
    extra: Mapping[str, Any] | None = None
    trained_on_positives: bool | None = None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def summary_of(h: ScoreHistogram, rows: int) -> dict[str, Any]:
    """The JSON summary of a histogram (``fl.metrics``): AUCs, log loss and counts."""
    return {
        "roc_auc": _finite(h.roc_auc()),
        "pr_auc": _finite(h.pr_auc()),
        "log_loss": _finite(h.log_loss()),
        "rows": int(rows),
        "labelled": int(h.count),
        "positives": int(h.positives),
    }


def round_metrics(
    round_: int,
    evaluations: Sequence[SiloEvaluation],
    *,
    model_version: str,
    round_seconds: float,
    idle_silos: Sequence[int] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """The ``fl.metrics`` document of a round (schema ``fl_metrics.schema.json``).

    ``global`` comes from the merged histograms (never an average of per-silo AUCs).
    Non-finite values become ``None`` (JSON null).
    """
    if not evaluations:
        raise ValueError("round_metrics needs at least one silo evaluation")
    merged = merge_histograms(e.histogram for e in evaluations)
    silos: dict[str, Any] = {}
    for e in evaluations:
        entry = summary_of(e.histogram, e.rows)
        entry["examples"] = int(e.n_examples)
        entry["train_loss"] = _finite(e.train_loss)
        if e.extra:
            entry.update(e.extra)
        silos[str(e.silo)] = entry
    return {
        "round": int(round_),
        "time": time.time() if now is None else now,
        "model_version": model_version,
        "global": summary_of(merged, sum(e.rows for e in evaluations)),
        "silos": silos,
        "idle_silos": sorted(int(s) for s in idle_silos),
        "round_seconds": round(float(round_seconds), 3),
    }


class Backoff:
    """Exponential sleep schedule for idle rounds: ``start, 2*start, ...`` up to ``maximum``."""

    def __init__(self, start: float = 1.0, maximum: float = 30.0) -> None:
        if start <= 0 or maximum < start:
            raise ValueError(f"need 0 < start <= maximum, got {start}, {maximum}")
        self.start = start
        self.maximum = maximum
        self._next = start

    @classmethod
    def up_to(cls, maximum: float) -> Backoff:
        """Start at 1 s, or at ``maximum`` when the run config allows less than that."""
        return cls(min(1.0, maximum), maximum)

    def next(self) -> float:
        """The next sleep in seconds (and double the one after)."""
        value = self._next
        self._next = min(self._next * 2.0, self.maximum)
        return value

    def reset(self) -> None:
        """Back to ``start`` after a round with data."""
        self._next = self.start
