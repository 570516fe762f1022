"""Flower ServerApp (thin): continuous rounds, publish every global model to Kafka.

The loop drives Flower's strategy itself (``configure_train`` -> push/pull ->
``aggregate_train``) instead of ``strategy.start`` so that it can

- run forever (``num-rounds = 0``) and wait with backoff while no silo has new data
  (an idle attempt does not count as a round);
- proceed with the nodes that answered within ``round-timeout``;
- publish the global model frame (parameters, standardisation, spec version, round,
  metrics) to ``fl.model.global`` and the merged prequential metrics to ``fl.metrics``
  after every round;
- resume from the newest compatible model on ``fl.model.global`` when it starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from app.fl.aggregation import informative, pooled_prior_shift, shift_parameter
from app.fl.config import FLConfig
from app.fl.kafka_io import publish_round, read_models
from app.fl.messages import (
    ParsedReply,
    arrays_from_record,
    arrays_to_record,
    build_server_config,
    parse_reply,
)
from app.fl.model_store import choose_resume, make_model_frame, moments_of
from app.fl.offset_ledger import METRICS_KEY as LEDGER_KEY
from app.fl.offset_ledger import OffsetLedger, send_confirmations
from app.fl.privacy import PrivacyLedger, calibrate_for_dp, ledger_for
from app.fl.rounds import Backoff, round_metrics, silo_offsets
from app.fl.strategy import build_strategy, send_and_receive, with_ttl
from app.fl.whole_run import META_KEY as WHOLE_RUN_META
from app.fl.whole_run import WholeRun
from app.kafka.security import PLAINTEXT, read_client_config, use
from app.model.config import ModelConfig
from app.model.frame import SILO_OFFSETS_KEY, model_version_for
from app.model.params import head_bias_index, init_arrays, param_names, with_prior
from app.model.standardize import MomentStats, merge_all

__all__ = [
    "ServerState",
    "absorb_replies",
    "app",
    "asks_prior",
    "frame_metrics",
    "initial_arrays",
    "initial_state",
    "offsets_of",
    "prior_parameter",
    "run_rounds",
]

logger = logging.getLogger(__name__)

app = ServerApp()


@dataclass
class ServerState:
    """What the server carries from round to round."""

    round: int
    arrays: list[np.ndarray]
    moments: MomentStats
    rejected: list[str] = field(default_factory=list)
    whole_run: WholeRun = field(default_factory=WholeRun)  # every round, restored on resume
    idle_rows: dict[int, int] = field(default_factory=dict)  # read in unpublished rounds
    privacy: dict[str, Any] | None = None  # the resumed model's privacy account, if any
    ledger: OffsetLedger = field(default_factory=OffsetLedger)  # what silos may commit


def resolve_spec(cfg: FLConfig) -> tuple[str, int]:
    """Spec version and width of the rows: the run config's if given, else the stream's
    published spec (``features.spec``, :mod:`app.fl.spec_source`), else the default."""
    from app.fl.spec_source import choose_spec, published_specs

    return choose_spec(cfg.spec_version, cfg.n_features, published_specs(cfg.bootstrap))


def initial_arrays(cfg: FLConfig, model_cfg: ModelConfig) -> list[np.ndarray]:
    """The parameters of a model started from scratch (seeded init, optional prior)."""
    return with_prior(init_arrays(model_cfg), cfg.init_prior, model_cfg)


def asks_prior(cfg: FLConfig, state: ServerState) -> bool:
    """Whether silos should start the head at their base rate: nobody trained it yet."""
    return cfg.prior_from_data and cfg.init_prior == 0.0 and state.round == 0


def offsets_of(cfg: FLConfig, state: ServerState) -> dict[int, float]:
    """The silos' base-rate corrections from the whole-run counts (``silo-prior``)."""
    if not cfg.silo_prior:
        return {}
    counts = {s: (h.count, h.positives) for s, h in state.whole_run.histograms.items()}
    return silo_offsets(counts)


def frame_metrics(cfg: FLConfig, state: ServerState, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a round's model frame carries beside the ``fl.metrics`` document.

    The whole-run histograms (a restarted server continues them) and the silos' base-rate
    corrections from the counts including this round: exactly those the next round's
    prequential scores use, so the stream worker's live scores can apply the same.
    """
    return {
        **metrics,
        WHOLE_RUN_META: state.whole_run.to_meta(),
        SILO_OFFSETS_KEY: {str(s): v for s, v in offsets_of(cfg, state).items()},
    }


def initial_state(cfg: FLConfig, model_cfg: ModelConfig, spec_version: str) -> ServerState:
    """Resume from ``fl.model.global`` (newest compatible frame) or start from scratch."""
    if cfg.resume:
        point = choose_resume(read_models(cfg.bootstrap, cfg.model_name), spec_version, model_cfg)
        if point.frame is not None:
            logger.info(
                "resuming %s from round %d (%s)",
                cfg.model_name,
                point.round,
                point.frame.meta.model_version,
            )
            arrays = [np.array(a, dtype=np.float32) for a in point.frame.arrays]
            whole = WholeRun.from_meta(point.frame.meta.metrics.get(WHOLE_RUN_META))
            state = ServerState(point.round, arrays, moments_of(point.frame), point.rejected, whole)
            state.privacy = point.frame.meta.metrics.get("privacy")
            state.ledger = OffsetLedger.from_json(point.frame.meta.metrics.get(LEDGER_KEY))
            return state
        rejected = point.rejected
    else:
        rejected = []
    logger.info("starting %s from scratch", cfg.model_name)
    arrays = initial_arrays(cfg, model_cfg)
    return ServerState(0, arrays, MomentStats.empty(model_cfg.n_features), rejected)


def absorb_replies(
    state: ServerState,
    strategy: Strategy,
    round_: int,
    parsed: list[ParsedReply],
    head_bias: str | None = None,
) -> ArrayRecord | None:
    """Merge a round's standardisation statistics and aggregate the contributing replies.

    The one server step between "replies parsed" and "round published"; the ServerApp
    and ``bench quality`` (in-process rounds) both call it. None = nobody trained.
    Replies that trained on negatives only sit out when others saw a positive
    (:func:`app.fl.aggregation.informative`); ``head_bias`` (a round in which the silos
    set their own prior, see :func:`prior_parameter`) is then moved to the pooled base rate.
    """
    contributing = informative(parsed)
    left = sorted(p.evaluation.silo for p in parsed if p.contributes and p not in contributing)
    if left:  # logged here, once a round (run_rounds asks informative() again to publish)
        logger.info("round %d: silos %s trained on negatives only: not averaged", round_, left)
    # Rows read without labels are consumed (committed) too: their moments count
    # towards the standardisation even when no silo trained (as in the baseline).
    with_rows = [p.moments for p in parsed if p.moments.count]
    if with_rows:
        state.moments = merge_all([state.moments, *with_rows])
    if not contributing:
        return None
    messages = [p.message for p in contributing]
    calibrate_for_dp(strategy, messages)
    aggregated, _ = strategy.aggregate_train(round_, messages)
    if aggregated is not None and head_bias is not None:
        evaluations = [p.evaluation for p in parsed if not p.no_data]
        shift = pooled_prior_shift(evaluations, [p.evaluation for p in contributing])
        aggregated = shift_parameter(aggregated, head_bias, shift)
    return aggregated


def prior_parameter(cfg: FLConfig, state: ServerState, model_cfg: ModelConfig) -> str | None:
    """The head bias to move to the pooled base rate after this round, if the silos set it.

    Only for a plain weighted average (FedAvg, FedProx): FedAdam's step is not an average
    of the silos' parameters, so there is no average of their priors to correct.
    """
    if not asks_prior(cfg, state) or cfg.strategy == "fedadam":
        return None
    index = head_bias_index(model_cfg)
    return None if index is None else param_names(model_cfg)[index]


def run_rounds(grid: Grid, cfg: FLConfig, stop_after_idle: int = 0) -> ServerState:
    """The server loop; returns after ``num-rounds`` rounds (never when it is 0).

    ``stop_after_idle`` > 0 ends the loop after that many consecutive idle attempts
    (used by tests and the benchmark; 0 = wait forever).
    """
    spec_version, n_features = resolve_spec(cfg)
    model_cfg = cfg.model_config(n_features)
    names = param_names(model_cfg)
    state = initial_state(cfg, model_cfg, spec_version)
    strategy = build_strategy(cfg)
    ledger = _ledger(cfg, state)
    backoff = Backoff.up_to(cfg.idle_backoff_max)
    done = idle = 0
    while cfg.num_rounds == 0 or done < cfg.num_rounds:
        if ledger is not None and ledger.next_would_exceed():
            logger.warning("stopping: round %d would spend more than epsilon %g (spent %.3f)",
                           state.round + 1, ledger.max_epsilon, ledger.epsilon)  # fmt: skip
            break
        t0 = time.perf_counter()
        mean, std = state.moments.mean_std() if state.moments.count else (None, None)
        config = build_server_config(
            spec_version=spec_version,
            n_features=n_features,
            mean=mean,
            std=std,
            set_prior=asks_prior(cfg, state),
            round_rows=cfg.policy().target(state.round + 1),
            offsets=offsets_of(cfg, state),
            model_round=state.round,
        )
        state.ledger.add_to(config)  # confirms what earlier rounds aggregated
        next_round = state.round + 1
        messages = strategy.configure_train(
            next_round, arrays_to_record(state.arrays, names), config, grid
        )
        replies = send_and_receive(grid, with_ttl(messages, cfg.round_timeout), cfg.round_timeout)
        parsed, errors = [], []
        for reply in replies:
            try:
                if reply.has_error():
                    raise ValueError(reply.error.reason)
                parsed.append(parse_reply(reply))
            except (ValueError, KeyError, TypeError) as exc:
                errors.append(f"node {reply.metadata.src_node_id}: {exc}")
        for problem in errors:
            logger.warning("round %d: dropped reply from %s", next_round, problem)
        head_bias = prior_parameter(cfg, state, model_cfg)
        aggregated = absorb_replies(state, strategy, next_round, parsed, head_bias)
        state.ledger.confirm_replies(
            (p.evaluation.silo, p.message) for p in parsed if not p.no_data
        )
        if aggregated is None:
            for p in parsed:  # unlabelled rows read and committed: the next round reports them
                if p.evaluation.rows:
                    silo = p.evaluation.silo
                    state.idle_rows[silo] = state.idle_rows.get(silo, 0) + p.evaluation.rows
            idle += 1
            if stop_after_idle and idle >= stop_after_idle:
                logger.info("stopping after %d idle attempts", idle)
                break
            pause = backoff.next()
            logger.info(
                "round %d: no silo had new data (%d replies); waiting %.0f s",
                next_round,
                len(parsed),
                pause,
            )
            time.sleep(pause)
            continue
        idle = 0
        backoff.reset()
        state.round = next_round
        state.arrays = arrays_from_record(aggregated, names)
        contributing = informative(parsed)
        privacy = ledger.record_round() if ledger is not None else None
        _publish(
            cfg, model_cfg, spec_version, state, parsed, contributing, time.perf_counter() - t0,
            privacy,
        )  # fmt: skip
        done += 1
    if state.ledger.confirmed:  # the last round's confirmation has no next round to ride on
        send_confirmations(grid, state.ledger, cfg.round_timeout,
                           _final_model(state, names, spec_version, n_features))  # fmt: skip
    return state


def _final_model(
    state: ServerState, names: list[str], spec_version: str, n_features: int
) -> tuple[ArrayRecord, ConfigRecord]:
    """The last global model as a train message would carry it (sites relay it)."""
    mean, std = state.moments.mean_std() if state.moments.count else (None, None)
    config = build_server_config(spec_version=spec_version, n_features=n_features, mean=mean,
                                 std=std, model_round=state.round)  # fmt: skip
    return arrays_to_record(state.arrays, names), config


def _ledger(cfg: FLConfig, state: ServerState) -> PrivacyLedger | None:
    """The privacy account of a run with DP noise (None without)."""
    if not cfg.dp_accounted:
        return None
    if state.round > 0 and state.privacy is None:
        logger.warning("privacy: resuming round %d of a model trained without DP noise; "
                       "epsilon counts only the rounds from now on", state.round)  # fmt: skip
    return ledger_for(cfg.dp_noise, cfg.dp_clip, cfg.dp_delta, cfg.min_nodes,
                      cfg.dp_max_epsilon, state.privacy)  # fmt: skip


def _publish(
    cfg: FLConfig,
    model_cfg: ModelConfig,
    spec_version: str,
    state: ServerState,
    parsed: list[ParsedReply],
    contributing: list[ParsedReply],
    seconds: float,
    privacy: dict[str, Any] | None = None,
) -> None:
    """Build the round's metrics and model frame and put both on Kafka."""
    evaluations = [p.evaluation for p in parsed if not p.no_data]
    state.whole_run.add(evaluations)
    metrics = round_metrics(
        state.round,
        evaluations,
        model_version=model_version_for(state.round, state.arrays),
        round_seconds=seconds,
        idle_silos=[p.evaluation.silo for p in parsed if p.no_data],
    )
    metrics["strategy"] = cfg.strategy
    metrics["aggregated_silos"] = sorted(p.evaluation.silo for p in contributing)
    metrics["standardisation_rows"] = state.moments.count
    metrics["whole_run"] = state.whole_run.summary()
    metrics["participation"] = participation(cfg, state, parsed)
    metrics["privacy"] = privacy  # epsilon spent so far at delta (None: no DP noise)
    metrics[LEDGER_KEY] = state.ledger.as_json()
    frame, version = make_model_frame(
        model_name=cfg.model_name,
        round_=state.round,
        arrays=state.arrays,
        config=model_cfg,
        spec_version=spec_version,
        moments=state.moments,
        metrics=frame_metrics(cfg, state, metrics),
    )
    publish_round(cfg.bootstrap, cfg.model_name, frame, metrics)
    glob, whole = metrics["global"], metrics["whole_run"]["global"]
    logger.info(
        "round %d published (%s): whole-run prequential ROC AUC %s (this round %s over %d rows"
        " from %d of %d silos), %.1f s",
        state.round,
        version,
        whole["roc_auc"] if whole else None,
        glob["roc_auc"],
        glob["rows"],
        len(contributing),
        len(parsed),
        seconds,
    )


def participation(cfg: FLConfig, state: ServerState, parsed: list[ParsedReply]) -> dict[str, Any]:
    """Who took part in a round and with how many rows (``fl.metrics`` ``participation``).

    ``rows`` per silo are all rows it read since the previous published round (rounds in
    which nobody trained are not published); the baseline replays them.
    """
    rows = dict(state.idle_rows)
    state.idle_rows.clear()
    for p in parsed:
        rows[p.evaluation.silo] = rows.get(p.evaluation.silo, 0) + int(p.evaluation.rows)
    return {
        "policy": cfg.round_policy,
        "round_rows": cfg.policy().target(state.round),
        "replied": len(parsed),
        "trained": sum(1 for p in parsed if p.contributes),  # averaged: aggregated_silos
        "rows": {str(s): n for s, n in sorted(rows.items())},
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: typed run config once, then the round loop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = FLConfig.from_run_config(context.run_config)
    logger.info("fedstream ServerApp: %s", cfg)
    # Kafka as the federated server's principal (writes fl.model.global and fl.metrics)
    use(read_client_config(Path(cfg.kafka_config)) if cfg.kafka_config else PLAINTEXT)
    run_rounds(grid, cfg)
