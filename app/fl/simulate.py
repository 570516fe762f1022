"""In-process federated rounds over recorded silo streams (``bench quality``).

The same code the deployed path runs, minus Kafka and the network: Flower's strategy
configures each round (:func:`build_strategy`, ``configure_train``), every silo runs the
ClientApp's steps (:func:`parse_train_message`, :func:`prequential_round`,
:func:`build_reply`), the server parses the replies and aggregates them with
:func:`app.fl.server_app.absorb_replies`. What differs from ``fedstream fl up``: rows come
from arrays instead of silo topics, and a round's rows are chosen by :func:`plan_rounds`
(the round policy in event time) instead of by what arrived while the server waited.

The same plan drives the centralised model (round ``r`` pools every silo's rows of round
``r``) and the local-only models (each silo alone, its own rows of each round), so all
three are scored on exactly the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.fl.config import FLConfig
from app.fl.messages import (
    arrays_from_record,
    arrays_to_record,
    build_reply,
    build_server_config,
    parse_reply,
    parse_train_message,
)
from app.fl.rounds import RoundPolicy, prequential_round, silo_offsets
from app.fl.server_app import (
    ServerState,
    absorb_replies,
    asks_prior,
    initial_arrays,
    offsets_of,
    prior_parameter,
)
from app.fl.strategy import build_strategy
from app.model.metrics import ScoreHistogram, merge_histograms
from app.model.params import param_names
from app.model.standardize import MomentStats

__all__ = [
    "RunResult",
    "SiloStream",
    "plan_rounds",
    "run_centralised",
    "run_federated",
    "run_local",
]

logger = logging.getLogger(__name__)

Plan = list[dict[int, tuple[int, int]]]
"""Per round: silo -> ``(start, end)`` row range of that silo's stream."""


@dataclass(frozen=True)
class SiloStream:
    """One silo's rows in event-time order; ``order`` = position in the whole stream."""

    X: np.ndarray
    y: np.ndarray
    order: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


def plan_rounds(streams: Sequence[SiloStream], policy: RoundPolicy) -> Plan:
    """Cut the streams into rounds as the round policy would, in event time.

    Rows arrive in the order of ``order``. Round ``r`` waits for every silo to have
    ``policy.target(r)`` new rows, but no longer than until the stream has delivered
    ``policy.patience`` times ``n_silos * target`` rows since the round started (the
    wait, measured in rows of the stream). Silos with at least ``min_rows`` new rows then
    take part, each reading at most ``max_rows``; the others keep their rows for later.
    With ``policy.first_ready`` the round instead closes as soon as ONE silo has
    ``target`` rows (what ``min-nodes 1`` without a wait did).
    """
    n = len(streams)
    silo_of = np.concatenate([np.full(s.rows, i, dtype=np.int64) for i, s in enumerate(streams)])
    order = np.concatenate([s.order for s in streams])
    arrival = silo_of[np.argsort(order, kind="stable")].tolist()
    consumed = [0] * n
    arrived = [0] * n
    plan: Plan = []
    pos, r = 0, 1
    total = len(arrival)
    while pos < total:
        target = policy.target(r)
        budget = int(policy.patience * n * target)
        seen = 0
        while pos < total:
            arrived[arrival[pos]] += 1
            pos += 1
            seen += 1
            pending = [a - c for a, c in zip(arrived, consumed, strict=True)]
            if policy.first_ready:
                if max(pending) >= target:
                    break
            elif min(pending) >= target or seen >= budget:
                break
        pending = [a - c for a, c in zip(arrived, consumed, strict=True)]
        threshold = target if policy.first_ready else policy.min_rows
        batches = {}
        for s in range(n):
            if pending[s] >= threshold or (pos >= total and pending[s] > 0):
                take = min(pending[s], policy.max_rows)
                batches[s] = (consumed[s], consumed[s] + take)
                consumed[s] += take
        if batches:
            plan.append(batches)
            # as on the server: only a round in which a silo trained counts towards the
            # schedule, so a stream whose labels start late still begins with small rounds
            if any((streams[s].y[b:e] >= 0).any() for s, (b, e) in batches.items()):
                r += 1
    return plan


@dataclass
class RunResult:
    """Prequential outcome of one way of training (federated, centralised or local-only).

    ``scores``/``labels`` per silo are the labelled rows in stream order (for exact
    metrics); ``published`` per silo are the histograms the server merged (the figures
    ``fl.metrics`` reports).
    """

    scores: dict[int, list[np.ndarray]] = field(default_factory=dict)
    labels: dict[int, list[np.ndarray]] = field(default_factory=dict)
    published: dict[int, ScoreHistogram] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def add(self, silo: int, scores: np.ndarray, labels: np.ndarray, h: ScoreHistogram) -> None:
        known = labels >= 0
        self.scores.setdefault(silo, []).append(np.asarray(scores, np.float64))
        self.labels.setdefault(silo, []).append(np.asarray(labels[known], np.int64))
        prev = self.published.get(silo)
        self.published[silo] = h if prev is None else prev.merge(h)

    def silo_arrays(self, silo: int) -> tuple[np.ndarray, np.ndarray]:
        s, y = self.scores.get(silo, []), self.labels.get(silo, [])
        return (np.concatenate(s) if s else np.zeros(0), np.concatenate(y) if y else np.zeros(0))

    def all_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.silo_arrays(s) for s in sorted(self.scores)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def published_global(self) -> ScoreHistogram:
        return merge_histograms(self.published.values())


class _Nodes:
    """What ``configure_train`` asks of a grid: the ids of the connected nodes."""

    def __init__(self, node_ids: Sequence[int]) -> None:
        self._ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._ids)


def _task_identity() -> None:
    """Flower builds a reply's metadata from the task identity a ClientApp runs under."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("run_id", "node_id", "task_id"):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:  # not inside a Flower task: this process is its own "task"
            setattr(TaskIdentity, name, 1)


def run_federated(
    streams: Sequence[SiloStream], plan: Plan, cfg: FLConfig, n_features: int
) -> RunResult:
    """Federated prequential training over ``plan`` with the deployed round code."""
    _task_identity()
    model_cfg = cfg.model_config(n_features)
    names = param_names(model_cfg)
    state = ServerState(0, initial_arrays(cfg, model_cfg), MomentStats.empty(n_features))
    strategy = build_strategy(cfg)
    replay = {s: cfg.new_replay(n_features) for s in range(len(streams))}  # one per silo
    opt: dict[int, list[np.ndarray] | None] = {}  # each silo's Adam state (carry-optimizer)
    out = RunResult()
    for r, batches in enumerate(plan, start=1):
        mean, std = state.moments.mean_std() if state.moments.count else (None, None)
        config = build_server_config(
            spec_version="bench",
            n_features=n_features,
            mean=mean,
            std=std,
            set_prior=asks_prior(cfg, state),
            round_rows=cfg.policy().target(state.round + 1),
            offsets=offsets_of(cfg, state),
        )
        node_of = {s + 1: s for s in batches}
        messages = strategy.configure_train(
            r,
            arrays_to_record(state.arrays, names),
            config,
            _Nodes(list(node_of)),  # type: ignore[arg-type]
        )
        parsed = []
        for msg in messages:
            silo = node_of[msg.metadata.dst_node_id]
            start, end = batches[silo]
            ins = parse_train_message(msg)
            silo_cfg = cfg.model_config(ins.n_features, proximal_mu=ins.proximal_mu)
            arrays = arrays_from_record(ins.arrays_record, names)
            X, y = streams[silo].X[start:end], streams[silo].y[start:end]
            result = prequential_round(
                arrays, X, y, silo_cfg, ins.mean, ins.std, set_prior=ins.set_prior,
                replay=replay[silo], offset=ins.offset_for(silo), opt_state=opt.get(silo),
            )  # fmt: skip
            replay[silo] = result.replay
            if cfg.carry_optimizer:
                opt[silo] = result.opt_state
            reply = build_reply(
                msg,
                silo=silo,
                topic=f"bench.silo.{silo}",
                arrays_record=ins.arrays_record,
                result=result,
                n_features=n_features,
            )
            p = parse_reply(reply)
            parsed.append(p)
            scores = result.scores if result.scores is not None else np.zeros(0)
            out.add(silo, scores, y, p.evaluation.histogram)
        head_bias = prior_parameter(cfg, state, cfg.model_config(n_features))
        aggregated = absorb_replies(state, strategy, r, parsed, head_bias)
        if aggregated is not None:  # as the ServerApp: a round nobody trained in is idle
            state.arrays = arrays_from_record(aggregated, names)
            state.round += 1
            state.whole_run.add([p.evaluation for p in parsed if not p.no_data])
        out.rounds.append(
            {
                "round": r,
                "silos": sorted(batches),
                "rows": {s: e - b for s, (b, e) in batches.items()},
            }
        )
    return out


def _pooled_run(
    streams: Sequence[SiloStream], plan: Plan, cfg: FLConfig, n_features: int
) -> RunResult:
    """One model trained on each round's rows of the silos in ``plan`` pooled."""
    model_cfg = cfg.model_config(n_features)
    arrays = initial_arrays(cfg, model_cfg)
    moments = MomentStats.empty(n_features)
    replay = cfg.new_replay(n_features)  # the pooled learner's memory, as a silo's
    opt: list[np.ndarray] | None = None  # and its Adam state, as a silo's (carry-optimizer)
    out = RunResult()
    trained = False
    counts: dict[int, tuple[int, int]] = {}  # silo -> (labelled, positives) scored so far
    for r, batches in enumerate(plan, start=1):
        silos = sorted(batches)
        xs = [streams[s].X[batches[s][0] : batches[s][1]] for s in silos]
        ys = [streams[s].y[batches[s][0] : batches[s][1]] for s in silos]
        mean, std = moments.mean_std() if moments.count else (None, None)
        fresh = not trained and cfg.prior_from_data and cfg.init_prior == 0.0
        # the pooled learner knows each row's silo too: the same base-rate correction
        by_silo = silo_offsets(counts) if cfg.silo_prior else {}
        offset = np.concatenate(
            [np.full(y.size, by_silo.get(s, 0.0)) for s, y in zip(silos, ys, strict=True)]
        )
        result = prequential_round(
            arrays, np.concatenate(xs), np.concatenate(ys), model_cfg, mean, std,
            set_prior=fresh, replay=replay, offset=offset, opt_state=opt,
        )  # fmt: skip
        if cfg.carry_optimizer:
            opt = result.opt_state
        for s, y in zip(silos, ys, strict=True):
            n, p = counts.get(s, (0, 0))
            counts[s] = (n + int((y >= 0).sum()), p + int((y > 0).sum()))
        replay = result.replay
        trained = trained or result.n_examples > 0
        arrays = result.arrays
        moments = moments.merge(result.moments)
        scores = result.scores if result.scores is not None else np.zeros(0)
        at = 0
        for s, y in zip(silos, ys, strict=True):
            k = int((y >= 0).sum())
            part = scores[at : at + k]
            at += k
            out.add(s, part, y, ScoreHistogram.from_scores(part, y[y >= 0]))
        out.rounds.append(
            {"round": r, "silos": silos, "rows": result.rows, "histogram": result.histogram}
        )
    return out


def run_centralised(
    streams: Sequence[SiloStream], plan: Plan, cfg: FLConfig, n_features: int
) -> RunResult:
    """The centralised reference: round ``r`` pools every silo's rows of round ``r``."""
    return _pooled_run(streams, plan, cfg, n_features)


def run_local(
    streams: Sequence[SiloStream], plan: Plan, cfg: FLConfig, n_features: int
) -> RunResult:
    """Every silo alone: its own model on its own rows of each round (no federation)."""
    out = RunResult()
    for silo in range(len(streams)):
        own = [{silo: b[silo]} for b in plan if silo in b]
        alone = _pooled_run(streams, own, cfg, n_features)
        for s in alone.scores:
            out.scores[s] = alone.scores[s]
            out.labels[s] = alone.labels[s]
            out.published[s] = alone.published[s]
    return out
