"""Global models as frames: build the frame of a round, pick the model to resume from.

Pure (no Kafka, no flwr): :mod:`app.fl.kafka_io` moves the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.model.config import ModelConfig
from app.model.frame import ModelFrame, ModelMeta, decode_model, encode_model, model_version_for
from app.model.params import validate_arrays
from app.model.standardize import MomentStats

__all__ = ["ResumePoint", "choose_resume", "make_model_frame", "moments_of"]

logger = logging.getLogger(__name__)

_MOMENTS_KEY = "standardisation_moments"


def make_model_frame(
    *,
    model_name: str,
    round_: int,
    arrays: Sequence[np.ndarray],
    config: ModelConfig,
    spec_version: str,
    moments: MomentStats,
    metrics: dict[str, Any],
) -> tuple[bytes, str]:
    """Encode a round's global model; returns ``(frame bytes, model version)``.

    The frame carries the mean/std for scoring and, in its metadata, the exact moment
    sums behind them so that a restarted server keeps merging statistics exactly.
    """
    version = model_version_for(round_, arrays)
    mean, std = moments.mean_std()
    meta_metrics = dict(metrics)
    meta_metrics[_MOMENTS_KEY] = {
        "count": moments.count,
        "sum": moments.sum.tolist(),
        "sumsq": moments.sumsq.tolist(),
    }
    meta = ModelMeta(
        model_name=model_name,
        round=round_,
        spec_version=spec_version,
        model_version=version,
        n_features=config.n_features,
        config=config.to_dict(),
        metrics=meta_metrics,
    )
    frame = ModelFrame(
        meta=meta, arrays=[np.asarray(a, np.float32) for a in arrays], mean=mean, std=std
    )
    return encode_model(frame), version


def moments_of(frame: ModelFrame) -> MomentStats:
    """The moment statistics a frame was published with (reconstructed from mean/std if absent)."""
    raw = frame.meta.metrics.get(_MOMENTS_KEY)
    n = frame.meta.n_features
    if isinstance(raw, dict) and {"count", "sum", "sumsq"} <= set(raw):
        return MomentStats(int(raw["count"]), np.asarray(raw["sum"]), np.asarray(raw["sumsq"]))
    if frame.mean is None or frame.std is None:
        return MomentStats.empty(n)
    count = int(frame.meta.metrics.get("global", {}).get("rows") or 1)
    mean = np.asarray(frame.mean, np.float64)
    std = np.asarray(frame.std, np.float64)
    return MomentStats(count, mean * count, (std**2 + mean**2) * count)


@dataclass(frozen=True)
class ResumePoint:
    """Where a (re)started server continues."""

    frame: ModelFrame | None
    rejected: list[str] = field(default_factory=list)

    @property
    def round(self) -> int:
        return self.frame.meta.round if self.frame else 0


def choose_resume(frames: Sequence[bytes], spec_version: str, config: ModelConfig) -> ResumePoint:
    """The newest frame with the same feature spec and architecture; the others are reported.

    Parameters
    ----------
    frames : sequence of bytes
        Frames of one model name, oldest first.
    spec_version : str
        Feature-spec version the run trains on.
    config : ModelConfig
        Architecture the run trains (``module``, ``n_features`` and ``hidden`` must match).
    """
    rejected: list[str] = []
    best: ModelFrame | None = None
    for raw in frames:
        try:
            frame = decode_model(raw)
        except ValueError as exc:
            rejected.append(f"undecodable model frame: {exc}")
            continue
        meta = frame.meta
        why = None
        module = str(meta.config.get("module") or "mlp")
        if meta.spec_version != spec_version:
            why = f"feature spec {meta.spec_version!r} != {spec_version!r}"
        elif module != config.module:
            why = f"model {module!r} != {config.module!r}"
        else:
            try:
                validate_arrays(config, frame.arrays)
            except ValueError as exc:
                why = f"architecture differs: {exc}"
        if why:
            rejected.append(f"round {meta.round} ({meta.model_version}): {why}")
        else:
            best = frame  # the newest (last published) compatible frame wins
    for reason in rejected:
        logger.warning("ignoring incompatible global model: %s", reason)
    return ResumePoint(best, rejected)
