"""Centralised baseline: the same model and prequential evaluation on all silos pooled.

The silos' frames are cut into "rounds" exactly as the federated clients read them
(whole frames, at most ``max-rows-per-round`` rows per silo and round); round ``r`` of
the baseline pools round ``r`` of every silo, scores it with the current model first,
then trains on it, with the same cumulative standardisation as the federated server.
The difference between its prequential ROC AUC and the federated one is the cost of
federation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import topics
from app.features.frames import decode_batch
from app.fl.config import FLConfig
from app.fl.kafka_io import scan_topic
from app.fl.rounds import prequential_round
from app.model.metrics import ScoreHistogram, merge_histograms
from app.model.params import init_arrays, with_prior
from app.model.standardize import MomentStats

__all__ = ["BaselineReport", "plan_rounds", "read_silo_frames", "run_baseline"]

logger = logging.getLogger(__name__)

Chunk = tuple[np.ndarray, np.ndarray]


def read_silo_frames(bootstrap: str, silo: int, spec_version: str, n_features: int) -> list[Chunk]:
    """``(X, y)`` of every usable frame on a silo topic, in offset order (no commits)."""
    out = []
    for _key, value in scan_topic(bootstrap, topics.silo_batches(silo)):
        try:
            frame = decode_batch(value)
        except ValueError:
            continue
        if frame.meta.spec_version == spec_version and frame.meta.cols == n_features:
            out.append((np.array(frame.X), np.array(frame.y)))
    return out


def plan_rounds(frames: Sequence[Sequence[Chunk]], max_rows: int) -> list[Chunk]:
    """Pool per-silo frames into rounds the way federated clients consume them."""
    cursors = [0] * len(frames)
    rounds: list[Chunk] = []
    while any(c < len(f) for c, f in zip(cursors, frames, strict=True)):
        xs, ys = [], []
        for s, silo_frames in enumerate(frames):
            rows = 0
            while cursors[s] < len(silo_frames):
                X, y = silo_frames[cursors[s]]
                if rows and rows + X.shape[0] > max_rows:
                    break
                xs.append(X)
                ys.append(y)
                rows += X.shape[0]
                cursors[s] += 1
                if rows >= max_rows:
                    break
        rounds.append((np.concatenate(xs), np.concatenate(ys)))
    return rounds


@dataclass
class BaselineReport:
    """Per-round and overall prequential metrics of the centralised model."""

    rounds: list[dict[str, float | int | None]] = field(default_factory=list)
    overall: ScoreHistogram | None = None

    def lines(self) -> list[str]:
        out = [
            f"round {r['round']:>4}: rows {r['rows']:>7}  prequential ROC AUC {_fmt(r['roc_auc'])}"
            f"  PR AUC {_fmt(r['pr_auc'])}  log loss {_fmt(r['log_loss'])}"
            for r in self.rounds
        ]
        if self.overall is not None:
            h = self.overall
            out.append(
                f"overall: rows {h.count}  prequential ROC AUC {_fmt(h.roc_auc())}  "
                f"PR AUC {_fmt(h.pr_auc())}  log loss {_fmt(h.log_loss())}"
            )
        return out


def _fmt(value: float | int | None) -> str:
    return "  n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def run_baseline(
    frames: Sequence[Sequence[Chunk]], cfg: FLConfig, n_features: int
) -> BaselineReport:
    """Centralised prequential training over per-silo frames (see the module docstring)."""
    model_cfg = cfg.model_config(n_features)
    arrays = with_prior(init_arrays(model_cfg), cfg.init_prior)
    moments = MomentStats.empty(n_features)
    report = BaselineReport()
    hists = []
    for i, (X, y) in enumerate(plan_rounds(frames, cfg.max_rows_per_round), start=1):
        mean, std = moments.mean_std() if moments.count else (None, None)
        result = prequential_round(arrays, X, y, model_cfg, mean, std)
        arrays = result.arrays
        moments = moments.merge(result.moments)
        hists.append(result.histogram)
        h = result.histogram
        report.rounds.append(
            {
                "round": i,
                "rows": result.rows,
                "roc_auc": h.roc_auc(),
                "pr_auc": h.pr_auc(),
                "log_loss": h.log_loss(),
            }
        )
    report.overall = merge_histograms(hists) if hists else None
    return report
