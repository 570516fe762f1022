"""Flower records of one round: what the server sends and what a silo replies.

Server -> client (``train`` message)::

    "arrays": ArrayRecord   global parameters, keys = canonical parameter names
    "config": ConfigRecord  server-round, model-round (of the arrays), spec-version,
                            n-features, [mean, std], [proximal-mu (FedProx)]

Client -> server (one reply per round, evaluation inside)::

    "arrays":  ArrayRecord   locally trained parameters (same keys)
    "metrics": MetricRecord  num-examples (aggregation weight), rows, no-data, silo-id,
                             train-loss, train-positives (0/1: the rows trained on held
                             a positive), train/score/read seconds, skipped-frames
    "evaluation": ConfigRecord  prequential score histograms + log-loss sum, moment
                             statistics of the new rows, topic read, reply size

Only aggregates cross the silo boundary: the reply's size does not depend on the number
of rows (a unit test checks that no row can be recovered from it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from app.fl.rounds import SiloEvaluation, SiloRoundResult
from app.model.metrics import N_BINS, ScoreHistogram
from app.model.standardize import MomentStats

__all__ = [
    "ARRAYS",
    "CONFIG",
    "EVALUATION",
    "METRICS",
    "ParsedReply",
    "TrainInstruction",
    "arrays_from_record",
    "arrays_to_record",
    "build_reply",
    "build_server_config",
    "parse_reply",
    "parse_train_message",
]

logger = logging.getLogger(__name__)

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
EVALUATION = "evaluation"
WEIGHT_KEY = "num-examples"


def arrays_to_record(arrays: Sequence[np.ndarray], names: Sequence[str]) -> ArrayRecord:
    """Parameters -> ArrayRecord keyed by canonical names (order preserved)."""
    if len(arrays) != len(names):
        raise ValueError(f"{len(arrays)} arrays but {len(names)} names")
    return ArrayRecord(
        {
            n: Array(np.ascontiguousarray(a, dtype=np.float32))
            for n, a in zip(names, arrays, strict=True)
        }
    )


def arrays_from_record(record: ArrayRecord, names: Sequence[str]) -> list[np.ndarray]:
    """ArrayRecord -> parameters in canonical order; raises ValueError on missing keys."""
    missing = [n for n in names if n not in record]
    if missing:
        raise ValueError(f"parameter record lacks {missing}")
    return [np.asarray(record[n].numpy(), dtype=np.float32) for n in names]


def build_server_config(
    *,
    spec_version: str,
    n_features: int,
    mean: np.ndarray | None,
    std: np.ndarray | None,
    set_prior: bool = False,
    round_rows: int = 0,
    offsets: Mapping[int, float] | None = None,
    model_round: int = 0,
) -> ConfigRecord:
    """The ConfigRecord of a train message (the strategy adds server-round and its keys).

    ``set-prior`` 1 asks silos to start the model's head at their base rate (a model
    nobody has trained yet); ``round-rows`` is how many rows the round waits for;
    ``offsets`` are the silos' base-rate corrections (``silo-offset-ids`` and
    ``silo-offsets``, :func:`app.fl.rounds.silo_offsets`); ``model-round`` is the round
    of the global model sent (0: untrained; a site relays the others, app/fl/site_model.py).
    """
    config = ConfigRecord(
        {
            "model-round": int(model_round),
            "spec-version": spec_version,
            "n-features": int(n_features),
            "set-prior": int(set_prior),
            "round-rows": int(round_rows),
        }
    )
    if mean is not None and std is not None:
        config["mean"] = [float(v) for v in np.asarray(mean).reshape(-1)]
        config["std"] = [float(v) for v in np.asarray(std).reshape(-1)]
    if offsets:
        config["silo-offset-ids"] = [int(s) for s in offsets]
        config["silo-offsets"] = [float(v) for v in offsets.values()]
    return config


@dataclass(frozen=True)
class TrainInstruction:
    """A decoded train message."""

    server_round: int
    arrays_record: ArrayRecord
    spec_version: str
    n_features: int
    mean: np.ndarray | None
    std: np.ndarray | None
    proximal_mu: float
    set_prior: bool = False
    round_rows: int = 0
    silo_offsets: Mapping[int, float] = field(default_factory=dict)

    def offset_for(self, silo: int) -> float:
        """The base-rate correction of ``silo``'s scores (0 when the server sent none)."""
        return float(self.silo_offsets.get(silo, 0.0))


def parse_train_message(msg: Message) -> TrainInstruction:
    """Decode the server's train message (raises ValueError when malformed)."""
    content = msg.content
    if ARRAYS not in content.array_records or CONFIG not in content.config_records:
        raise ValueError("train message needs an 'arrays' ArrayRecord and a 'config' ConfigRecord")
    cfg = content.config_records[CONFIG]
    mean = cfg.get("mean")
    std = cfg.get("std")
    return TrainInstruction(
        server_round=int(cfg.get("server-round", 0)),  # type: ignore[arg-type]
        arrays_record=content.array_records[ARRAYS],
        spec_version=str(cfg.get("spec-version", "")),
        n_features=int(cfg["n-features"]),  # type: ignore[arg-type]
        mean=None if mean is None else np.asarray(mean, dtype=np.float32),
        std=None if std is None else np.asarray(std, dtype=np.float32),
        proximal_mu=float(cfg.get("proximal-mu", 0.0)),  # type: ignore[arg-type]
        set_prior=bool(cfg.get("set-prior", 0)),
        round_rows=int(cfg.get("round-rows", 0)),  # type: ignore[arg-type]
        silo_offsets=dict(
            zip(
                [int(s) for s in cfg.get("silo-offset-ids", [])],  # type: ignore[union-attr]
                [float(v) for v in cfg.get("silo-offsets", [])],  # type: ignore[union-attr]
                strict=True,
            )
        ),
    )


def _metric(value: float) -> float:
    return float(value) if math.isfinite(value) else -1.0


def build_reply(
    msg: Message,
    *,
    silo: int,
    topic: str,
    arrays_record: ArrayRecord,
    result: SiloRoundResult | None,
    n_features: int,
    n_bins: int = N_BINS,
    read_seconds: float = 0.0,
    skipped_frames: int = 0,
) -> Message:
    """The one reply of a round; ``result`` None means "no data" (weight 0, same keys).

    Every reply has the same metric keys, so Flower's consistency checks pass for
    mixtures of busy and idle silos (the server drops idle ones before aggregating).
    """
    histogram = result.histogram if result else ScoreHistogram(n_bins)
    moments = result.moments if result else MomentStats.empty(n_features)
    metrics = MetricRecord(
        {
            WEIGHT_KEY: int(result.n_examples) if result else 0,
            "rows": int(result.rows) if result else 0,
            "no-data": 0 if result else 1,
            "silo-id": int(silo),
            "train-loss": _metric(result.train_loss) if result else -1.0,
            "train-positives": int(result.trained_on_positives) if result else 0,
            "train-seconds": float(result.train_seconds) if result else 0.0,
            "score-seconds": float(result.score_seconds) if result else 0.0,
            "read-seconds": float(read_seconds),
            "skipped-frames": int(skipped_frames),
        }
    )
    evaluation = ConfigRecord(
        {
            "hist-pos": [int(v) for v in histogram.pos],
            "hist-neg": [int(v) for v in histogram.neg],
            "loss-sum": float(histogram.loss_sum),
            "count": int(histogram.count),
            "moments-count": int(moments.count),
            "moments-sum": [float(v) for v in moments.sum],
            "moments-sumsq": [float(v) for v in moments.sumsq],
            "topic": topic,
        }
    )
    params = (
        arrays_record
        if result is None
        else ArrayRecord(
            {
                k: Array(np.ascontiguousarray(a, dtype=np.float32))
                for k, a in zip(arrays_record.keys(), result.arrays, strict=True)
            }
        )
    )
    evaluation["reply-values"] = reply_values(params, metrics, evaluation)
    content = RecordDict({ARRAYS: params, METRICS: metrics, EVALUATION: evaluation})
    return Message(content, reply_to=msg)


def reply_values(arrays: ArrayRecord, metrics: MetricRecord, evaluation: ConfigRecord) -> int:
    """Number of scalar values a reply carries (independent of the rows read)."""
    total = sum(int(np.prod(a.shape)) for a in arrays.values()) + len(metrics)
    for value in evaluation.values():
        total += len(value) if isinstance(value, list) else 1
    return total + 1  # + reply-values itself


@dataclass(frozen=True)
class ParsedReply:
    """A reply as the server uses it."""

    message: Message
    evaluation: SiloEvaluation
    moments: MomentStats
    no_data: bool
    topic: str

    @property
    def contributes(self) -> bool:
        """Whether the reply takes part in parameter aggregation (labelled rows trained)."""
        return not self.no_data and self.evaluation.n_examples > 0


def parse_reply(msg: Message) -> ParsedReply:
    """Decode a silo's reply (raises ValueError/KeyError when malformed)."""
    content = msg.content
    metrics = content.metric_records[METRICS]
    ev = content.config_records[EVALUATION]
    histogram = ScoreHistogram(
        len(ev["hist-pos"]),  # type: ignore[arg-type]
        np.asarray(ev["hist-pos"], dtype=np.int64),
        np.asarray(ev["hist-neg"], dtype=np.int64),
        float(ev["loss-sum"]),  # type: ignore[arg-type]
        int(ev["count"]),  # type: ignore[arg-type]
    )
    moments = MomentStats(
        int(ev["moments-count"]),  # type: ignore[arg-type]
        np.asarray(ev["moments-sum"], dtype=np.float64),
        np.asarray(ev["moments-sumsq"], dtype=np.float64),
    )
    loss = float(metrics["train-loss"])  # type: ignore[arg-type]
    topic = str(ev.get("topic", ""))
    evaluation = SiloEvaluation(
        silo=int(metrics["silo-id"]),  # type: ignore[arg-type]
        rows=int(metrics["rows"]),  # type: ignore[arg-type]
        n_examples=int(metrics[WEIGHT_KEY]),  # type: ignore[arg-type]
        histogram=histogram,
        train_loss=loss if loss >= 0 else float("nan"),
        trained_on_positives=(
            bool(metrics["train-positives"]) if "train-positives" in metrics else None
        ),
        extra={
            "topic": topic,
            "reply_values": int(ev.get("reply-values", 0)),  # type: ignore[arg-type]
            "train_seconds": round(float(metrics["train-seconds"]), 3),  # type: ignore[arg-type]
            "read_seconds": round(float(metrics["read-seconds"]), 3),  # type: ignore[arg-type]
            "skipped_frames": int(metrics["skipped-frames"]),  # type: ignore[arg-type]
        },
    )
    return ParsedReply(msg, evaluation, moments, bool(metrics["no-data"]), topic)
