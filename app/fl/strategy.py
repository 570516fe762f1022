"""Strategy glue: Flower's own strategies chosen by the run config, and a faster round trip.

Aggregation arithmetic stays in Flower's strategies (FedAvg, FedProx, FedAdam and the
server-side fixed-clipping DP wrapper); this module only picks and configures them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)

from app.fl.config import FLConfig
from app.fl.messages import ARRAYS, CONFIG, WEIGHT_KEY

__all__ = ["build_strategy", "send_and_receive", "with_ttl"]

logger = logging.getLogger(__name__)

_POLL_S = 0.2


def build_strategy(cfg: FLConfig) -> Strategy:
    """The strategy named by ``cfg.strategy``, optionally wrapped for server-side DP.

    Every connected node is asked each round (fraction 1.0); a round starts once
    ``min_nodes`` are connected.
    """
    common = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": cfg.min_nodes,
        "min_available_nodes": cfg.min_nodes,
        "weighted_by_key": WEIGHT_KEY,
        "arrayrecord_key": ARRAYS,
        "configrecord_key": CONFIG,
    }
    strategy: Strategy
    if cfg.strategy == "fedavg":
        strategy = FedAvg(**common)  # type: ignore[arg-type]
    elif cfg.strategy == "fedprox":
        strategy = FedProx(**common, proximal_mu=cfg.proximal_mu)  # type: ignore[arg-type]
    elif cfg.strategy == "fedadam":
        strategy = FedAdam(**common, eta=cfg.server_lr, eta_l=cfg.lr)  # type: ignore[arg-type]
    else:  # FLConfig validates the name; keep mypy and readers sure
        raise ValueError(f"unknown strategy {cfg.strategy!r}")
    if cfg.dp_enabled:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=cfg.dp_noise,
            clipping_norm=cfg.dp_clip,
            num_sampled_clients=cfg.min_nodes,
        )
    logger.info(
        "strategy: %s%s", cfg.strategy, " + server-side DP clipping" if cfg.dp_enabled else ""
    )
    return strategy


def with_ttl(messages: Iterable[Message], ttl: float) -> list[Message]:
    """Copies of ``messages`` that expire after ``ttl`` seconds.

    A message no node picked up before the round timeout must not be executed later:
    the ClientApp would consume (and commit) rows whose update nobody aggregates.
    """
    return [
        Message(
            m.content,
            dst_node_id=m.metadata.dst_node_id,
            message_type=m.metadata.message_type,
            ttl=ttl,
        )
        for m in messages
    ]


def send_and_receive(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push ``messages`` and pull replies every 0.2 s until all arrived or ``timeout``.

    Same contract as ``Grid.send_and_receive``, which polls every 3 s and so adds 1.5 s
    to every round on average.
    """
    if not messages:
        return []
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if pending:
            time.sleep(_POLL_S)
    if pending:
        logger.warning(
            "round timeout: %d of %d nodes did not answer in %.0f s",
            len(pending),
            len(messages),
            timeout,
        )
    return replies
