"""Flower ClientApp of one silo (thin): Kafka in, prequential round, aggregates out.

Every round (one ``train`` message; evaluation is inside it):

1. open a consumer on ONLY this silo's topic (``--node-config`` of the SuperNode gives
   ``silo-id``, ``topic`` and ``bootstrap``); commit what the server confirmed it has
   aggregated of this silo (app/fl/offset_ledger.py), then start at the committed offset;
2. read the NEW frames, at most ``max-rows-per-round`` rows, waiting up to
   ``round-wait`` s for the ``round-rows`` the server asks for (the round policy);
3. too few rows (< ``min-rows``): reply "no data" (weight 0, ``no-data`` = 1) and commit
   nothing, so the rows wait for the next round and the server backs off;
4. otherwise score the rows with the received global model first (prequential), train
   ``local-epochs``, reply weights + metrics + histograms + moment statistics + where the
   read ended. Nothing is committed here: a reply that is lost or late is never
   confirmed, and its rows are read and trained again in a later round.

A silo whose site has its own Kafka cluster (node config ``model-kafka-config``) first
relays the global model it received onto that cluster (app/fl/site_model.py).

Each message runs in a fresh process (Flower starts a new ClientApp per message), so the
consumer is opened and closed per round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

import topics
from app.fl.config import FLConfig
from app.fl.fault_hooks import hold_after_reply
from app.fl.kafka_io import SiloBatch, SiloReader, silo_group
from app.fl.messages import (
    CONFIG,
    arrays_from_record,
    build_reply,
    parse_train_message,
)
from app.fl.offset_ledger import CONFIRM_ONLY, attach_read_offsets, confirmed_for
from app.fl.rounds import prequential_round
from app.fl.site_model import relay_global_model
from app.kafka.security import PLAINTEXT, read_client_config, use
from app.model.replay import ReplayBuffer

__all__ = [
    "NodeSettings",
    "app",
    "handle_train",
    "load_optimizer",
    "load_replay",
    "read_round",
    "save_optimizer",
    "save_replay",
]

logger = logging.getLogger(__name__)

_WAIT_POLL_S = 0.5
_REPLAY_KEY = "fedstream.replay"
_OPTIMIZER_KEY = "fedstream.optimizer"

app = ClientApp()


@dataclass(frozen=True)
class NodeSettings:
    """What a SuperNode's ``--node-config`` tells its ClientApp."""

    silo_id: int
    topic: str
    bootstrap: str
    group: str = ""
    kafka_config: str = ""  # the silo principal's client config (its site's cluster)
    model_kafka_config: str = ""  # site-<id>'s, which relays the global model to the site

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any], model_name: str) -> NodeSettings:
        """``bootstrap`` may be left out when ``kafka-config`` names the cluster (a site's
        SuperNode needs only its own client config)."""
        try:
            silo = int(node_config["silo-id"])
        except KeyError as exc:
            raise ValueError(f"SuperNode --node-config lacks {exc.args[0]!r}") from None
        kafka_config = str(node_config.get("kafka-config") or "")
        bootstrap = str(node_config.get("bootstrap") or "")
        if not bootstrap and kafka_config:
            bootstrap = read_client_config(Path(kafka_config)).bootstrap
        if not bootstrap:
            raise ValueError("SuperNode --node-config lacks 'bootstrap' (or a 'kafka-config' "
                             "naming its cluster)")  # fmt: skip
        topic = str(node_config.get("topic") or topics.silo_batches(silo))
        group = str(node_config.get("group") or silo_group(model_name, silo))
        model_kafka_config = str(node_config.get("model-kafka-config") or "")
        return cls(silo, topic, bootstrap, group, kafka_config, model_kafka_config)


def read_round(
    reader: SiloReader, cfg: FLConfig, round_rows: int, spec_version: str, n_features: int
) -> SiloBatch:
    """The round policy on the silo's side: wait up to ``round-wait`` s for ``round_rows``.

    Nothing is committed while waiting; each look reads again from the committed offset.
    With ``first-ready`` (or no target from the server, or no new row at all) the silo
    takes what it has.
    """
    batch: SiloBatch = reader.read(cfg.max_rows_per_round, spec_version, n_features)
    want = min(round_rows, cfg.max_rows_per_round)
    if cfg.round_policy != "wait" or want <= 0 or batch.rows == 0:
        # Nothing new at all: answer "no data" at once and let the server back off. A
        # silo that waited here could still be reading when its run is stopped, and
        # train (and commit) rows whose reply nobody takes.
        return batch
    deadline = time.monotonic() + cfg.round_wait
    while batch.rows < want and time.monotonic() < deadline:
        time.sleep(_WAIT_POLL_S)
        batch = reader.read(cfg.max_rows_per_round, spec_version, n_features)
    return batch


def load_replay(state: RecordDict | None, cfg: FLConfig, n_features: int) -> ReplayBuffer | None:
    """The silo's replay buffer from Flower's ``context.state`` (empty on a new run)."""
    if not cfg.replay_rows:
        return None
    record = None if state is None else state.array_records.get(_REPLAY_KEY)
    if record is None:
        return ReplayBuffer.empty(n_features, cfg.replay_rows)
    arrays = {k: record[k].numpy() for k in record}
    return ReplayBuffer.from_arrays(arrays, n_features, cfg.replay_rows)


def save_replay(state: RecordDict | None, replay: ReplayBuffer | None) -> None:
    """Keep the buffer in ``context.state`` for the next round (it never leaves the node)."""
    if state is None or replay is None:
        return
    state.array_records[_REPLAY_KEY] = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in replay.to_arrays().items()}
    )


def load_optimizer(state: RecordDict | None, cfg: FLConfig) -> list[np.ndarray] | None:
    """The silo's local Adam state from ``context.state`` (None: a fresh optimizer)."""
    if not cfg.carry_optimizer or state is None:
        return None
    record = state.array_records.get(_OPTIMIZER_KEY)
    if record is None:
        return None
    return [record[str(i)].numpy() for i in range(len(record))]


def save_optimizer(state: RecordDict | None, opt_state: list[np.ndarray] | None) -> None:
    """Keep the local Adam state for the next round (it never leaves the node)."""
    if state is None or opt_state is None:
        return
    state.array_records[_OPTIMIZER_KEY] = ArrayRecord(
        {str(i): Array(np.ascontiguousarray(np.atleast_1d(v))) for i, v in enumerate(opt_state)}
    )


def handle_train(
    msg: Message, cfg: FLConfig, node: NodeSettings, state: RecordDict | None = None
) -> Message:
    """One round of one silo (see the module docstring); the adapter's whole logic.

    ``state`` is Flower's ``context.state`` of the run: it keeps the silo's replay buffer
    and its local optimizer state between rounds.
    """
    config = msg.content.config_records[CONFIG]
    confirmed = confirmed_for(config, node.silo_id)
    if config.get(CONFIRM_ONLY):  # the run ends: commit what the server aggregated
        with SiloReader(node.bootstrap, node.topic, node.group) as reader:
            logger.info("silo %d: final confirmation %s", node.silo_id, reader.advance(confirmed))
        relay_global_model(msg, cfg, node.model_kafka_config, state)  # the run's last model
        return Message(RecordDict({}), reply_to=msg)
    ins = parse_train_message(msg)
    model_cfg = cfg.model_config(ins.n_features, proximal_mu=ins.proximal_mu)
    with SiloReader(node.bootstrap, node.topic, node.group) as reader:
        advanced = reader.advance(confirmed)
        if advanced:
            logger.info("silo %d: server confirmed %s, committed", node.silo_id, advanced)
        relay_global_model(msg, cfg, node.model_kafka_config, state)  # to a site's own cluster
        batch = read_round(reader, cfg, ins.round_rows, ins.spec_version, ins.n_features)
        common = {
            "silo": node.silo_id,
            "topic": node.topic,
            "arrays_record": ins.arrays_record,
            "n_features": ins.n_features,
            "read_seconds": batch.seconds,
            "skipped_frames": batch.skipped_frames,
        }
        if batch.rows < cfg.min_rows:
            logger.info(
                "silo %d round %d: %d new rows < min-rows %d, no data",
                node.silo_id,
                ins.server_round,
                batch.rows,
                cfg.min_rows,
            )
            if batch.rows == 0 and batch.skipped_frames:
                reader.commit(batch)  # only unusable frames: move past them
            return build_reply(msg, result=None, **common)  # type: ignore[arg-type]
        from app.model.params import param_names  # JAX/Flax: only when there are rows

        arrays = arrays_from_record(ins.arrays_record, param_names(model_cfg))
        result = prequential_round(
            arrays, batch.X, batch.y, model_cfg, ins.mean, ins.std, set_prior=ins.set_prior,
            replay=load_replay(state, cfg, ins.n_features), offset=ins.offset_for(node.silo_id),
            opt_state=load_optimizer(state, cfg),
        )  # fmt: skip
        reply = attach_read_offsets(
            build_reply(msg, result=result, **common),  # type: ignore[arg-type]
            batch.next_offsets,
            batch.last_stamps,
        )
    logger.info(
        "silo %d round %d: %d rows (%d frames, %d skipped) read in %.2fs, trained in %.2fs",
        node.silo_id,
        ins.server_round,
        batch.rows,
        batch.frames,
        batch.skipped_frames,
        batch.seconds,
        result.train_seconds,
    )
    # The buffer advances with the read; a reply the server never aggregates leaves its rows
    # uncommitted, so they come again next round and may then be in the buffer twice.
    save_replay(state, result.replay)
    if cfg.carry_optimizer:
        save_optimizer(state, result.opt_state)
    hold_after_reply(node.silo_id, ins.server_round, batch.rows, batch.next_offsets)
    return reply


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Flower entry point: typed configs once, then :func:`handle_train`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = FLConfig.from_run_config(context.run_config)
    node = NodeSettings.from_node_config(context.node_config, cfg.model_name)
    # Kafka as this silo's principal, which may read only silo.<id>.* (no config: plaintext)
    use(read_client_config(Path(node.kafka_config)) if node.kafka_config else PLAINTEXT)
    return handle_train(msg, cfg, node, context.state)
