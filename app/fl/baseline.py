"""Centralised baseline: the same model and prequential evaluation on all silos pooled.

When the federated run's ``fl.metrics`` are at hand, the baseline replays its rounds:
round ``r`` pools exactly the rows every silo read in federated round ``r``, scores them
with the current model first, then trains on them (the same code as ``bench quality``'s
centralised model, :func:`app.fl.simulate.run_centralised`), with the same cumulative
standardisation and the same settings. Without them, the silos' frames are cut into
rounds of whole frames, at most ``max-rows-per-round`` rows per silo. Whole-run figures
are reported globally and per silo; the difference to the federated whole-run figures
is the cost of federation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import topics
from app.features.frames import decode_batch
from app.fl.config import FLConfig
from app.fl.kafka_io import scan_topic
from app.fl.simulate import Plan, SiloStream, run_centralised
from app.model.metrics import ScoreHistogram

__all__ = [
    "BaselineReport",
    "plan_rounds",
    "read_silo_frames",
    "rounds_rows_from_metrics",
    "run_baseline",
]

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
    """Per-round, whole-run global and whole-run per-silo prequential metrics."""

    rounds: list[dict[str, float | int | None]] = field(default_factory=list)
    overall: ScoreHistogram | None = None
    silos: dict[int, ScoreHistogram] = field(default_factory=dict)
    same_rows_as_federated: bool = False

    def lines(self) -> list[str]:
        out = [
            f"round {r['round']:>4}: rows {r['rows']:>7}  prequential ROC AUC {_fmt(r['roc_auc'])}"
            f"  PR AUC {_fmt(r['pr_auc'])}  log loss {_fmt(r['log_loss'])}"
            for r in self.rounds
        ]
        if self.overall is not None:
            h = self.overall
            which = (
                "the federated run's rounds and rows"
                if self.same_rows_as_federated
                else ("all rows on the silo topics")
            )
            out.append(
                f"overall: rows {h.count}  prequential ROC AUC {_fmt(h.roc_auc())}  "
                f"PR AUC {_fmt(h.pr_auc())}  log loss {_fmt(h.log_loss())}  ({which})"
            )
            for silo, sh in sorted(self.silos.items()):
                out.append(
                    f"  silo {silo}: rows {sh.count}  prequential ROC AUC {_fmt(sh.roc_auc())}"
                    f"  PR AUC {_fmt(sh.pr_auc())}"
                )
        return out


def _fmt(value: float | int | None) -> str:
    return "  n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def rounds_rows_from_metrics(docs: Sequence[dict[str, Any]]) -> list[dict[int, int]]:
    """Rows each silo read in each published round, from ``fl.metrics`` documents.

    Uses ``participation.rows`` (every reply, incl. rows read in idle rounds before it)
    or, for older documents, the per-silo ``rows``. A round published twice keeps its
    last document.
    """
    by_round: dict[int, dict[str, Any]] = {}
    for doc in docs:
        by_round[int(doc["round"])] = doc
    out = []
    for _r, doc in sorted(by_round.items()):
        rows = (doc.get("participation") or {}).get("rows")
        if rows is None:
            rows = {s: v.get("rows", 0) for s, v in (doc.get("silos") or {}).items()}
        out.append({int(s): int(n) for s, n in rows.items() if int(n) > 0})
    return out


def _plan(
    streams: Sequence[SiloStream],
    silo_ids: Sequence[int],
    frames: Sequence[Sequence[Chunk]],
    cfg: FLConfig,
    rounds_rows: Sequence[dict[int, int]] | None,
) -> Plan:
    if not rounds_rows:  # no federated run to follow: whole frames up to max rows per silo
        plan: Plan = []
        cursors = [0] * len(frames)
        starts = [0] * len(frames)
        while any(c < len(f) for c, f in zip(cursors, frames, strict=True)):
            entry = {}
            for s, silo_frames in enumerate(frames):
                rows = 0
                while cursors[s] < len(silo_frames):
                    n = silo_frames[cursors[s]][0].shape[0]
                    if rows and rows + n > cfg.max_rows_per_round:
                        break
                    rows += n
                    cursors[s] += 1
                    if rows >= cfg.max_rows_per_round:
                        break
                if rows:
                    entry[s] = (starts[s], starts[s] + rows)
                    starts[s] += rows
            plan.append(entry)
        return plan
    index = {silo: i for i, silo in enumerate(silo_ids)}
    used = [0] * len(streams)
    plan = []
    for round_rows in rounds_rows:
        entry = {}
        for silo, n in round_rows.items():
            i = index.get(silo)
            if i is None:
                continue
            end = min(used[i] + n, streams[i].rows)
            if end > used[i]:
                entry[i] = (used[i], end)
                used[i] = end
        if entry:
            plan.append(entry)
    return plan


def run_baseline(
    frames: Sequence[Sequence[Chunk]],
    cfg: FLConfig,
    n_features: int,
    silo_ids: Sequence[int] | None = None,
    rounds_rows: Sequence[dict[int, int]] | None = None,
) -> BaselineReport:
    """Centralised prequential training over per-silo frames (see the module docstring).

    With ``rounds_rows`` (from :func:`rounds_rows_from_metrics`) the baseline replays the
    federated run's rounds: the same rows of each silo in the same rounds, so its
    whole-run figures compare like with like. Without, it cuts the frames into rounds of
    at most ``max-rows-per-round`` rows per silo.
    """
    ids = list(silo_ids) if silo_ids is not None else list(range(len(frames)))
    streams = []
    for silo_frames in frames:
        X = (
            np.concatenate([x for x, _ in silo_frames])
            if silo_frames
            else np.zeros((0, n_features), np.float32)
        )
        y = np.concatenate([y for _, y in silo_frames]) if silo_frames else np.zeros(0)
        streams.append(SiloStream(X, y, np.arange(X.shape[0])))
    plan = _plan(streams, ids, frames, cfg, rounds_rows)
    result = run_centralised(streams, plan, cfg, n_features)
    report = BaselineReport(same_rows_as_federated=bool(rounds_rows))
    for i, r in enumerate(result.rounds, start=1):
        h = r["histogram"]
        report.rounds.append(
            {
                "round": i,
                "rows": int(r["rows"]),
                "roc_auc": h.roc_auc(),
                "pr_auc": h.pr_auc(),
                "log_loss": h.log_loss(),
            }
        )
    if result.published:
        report.overall = result.published_global()
        report.silos = {ids[i]: h for i, h in result.published.items()}
    return report
