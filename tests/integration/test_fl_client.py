"""The ClientApp's round logic on the real broker (Flower messages built in-process)."""

from __future__ import annotations

import numpy as np
import pytest
from confluent_kafka import TopicPartition
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

import topics
from app.fl.client_app import NodeSettings, handle_train, load_optimizer, load_replay
from app.fl.config import FLConfig
from app.fl.kafka_io import ensure_topics, produce_frames
from app.fl.messages import (
    ARRAYS,
    CONFIG,
    arrays_to_record,
    build_server_config,
    parse_reply,
)
from app.fl.offset_ledger import CONFIRM_ONLY, OffsetLedger, read_offsets
from app.fl.synthetic import synthetic_frames
from app.kafka.clients import make_consumer
from app.model.params import init_arrays, param_names

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower stamps messages with the identity of the running task; fake one in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _train_message(cfg: FLConfig, spec: str, ledger: OffsetLedger | None = None) -> Message:
    model_cfg = cfg.model_config(8)
    record = RecordDict(
        {
            ARRAYS: arrays_to_record(init_arrays(model_cfg), param_names(model_cfg)),
            CONFIG: build_server_config(spec_version=spec, n_features=8, mean=None, std=None),
        }
    )
    record[CONFIG]["server-round"] = 1
    if ledger is not None:
        ledger.add_to(record[CONFIG])
    return Message(record, dst_node_id=1, message_type=MessageType.TRAIN)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = make_consumer(bootstrap, group)
    try:
        return int(consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        consumer.close()


def test_rows_wait_train_and_commit_once_the_server_confirms(
    kafka_bootstrap: str, unique: str
) -> None:
    # Prepare: a silo with 50 rows (< min-rows 100), another silo with plenty of rows
    silo, other = 5000 + int(unique[:3], 16), 6000 + int(unique[:3], 16)
    spec = f"spec-{unique}"
    ensure_topics(kafka_bootstrap, [silo, other])
    topic = topics.silo_batches(silo)
    produce_frames(
        kafka_bootstrap, topic, str(silo), synthetic_frames(silo, spec, 50, frame_rows=50)
    )
    produce_frames(
        kafka_bootstrap,
        topics.silo_batches(other),
        str(other),
        synthetic_frames(other, spec, 1000),
    )
    cfg = FLConfig(min_rows=100, max_rows_per_round=1000, model_name=f"m-{unique}", hidden=(8,))
    node = NodeSettings.from_node_config(
        {"silo-id": silo, "topic": topic, "bootstrap": kafka_bootstrap}, cfg.model_name
    )

    # Execute: a round with too few rows
    idle = parse_reply(handle_train(_train_message(cfg, spec), cfg, node))

    # Assert: "no data", weight 0, nothing committed (the 50 rows wait)
    assert idle.no_data and not idle.contributes
    assert idle.evaluation.n_examples == 0
    assert _committed(kafka_bootstrap, node.group, topic) < 0

    # Execute: more rows arrive, next round trains on all of them
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, spec, 450, seed=1))
    state = RecordDict({})  # Flower's context.state of the run
    raw = handle_train(_train_message(cfg, spec), cfg, node, state)
    busy = parse_reply(raw)

    # Assert: 500 rows scored and trained; the reply says where the read ended, and
    # nothing is committed yet (the reply could still be lost)
    assert not busy.no_data and busy.contributes
    assert busy.evaluation.rows == 500 and busy.evaluation.histogram.count == 500
    assert busy.moments.count == 500
    assert busy.topic == topic
    assert {p: o for p, (o, _t) in read_offsets(raw).items()} == {0: 2}
    assert _committed(kafka_bootstrap, node.group, topic) < 0
    assert np.isfinite(busy.evaluation.train_loss)
    # the silo's replay buffer stays in its context.state, holding the labelled rows read
    replay = load_replay(state, cfg, busy.moments.n_features)
    assert replay is not None and replay.rows == busy.evaluation.histogram.count == 500
    # and so does its local Adam state (carry-optimizer): moments and a step count > 0
    opt = load_optimizer(state, cfg)
    steps = [int(leaf.reshape(-1)[0]) for leaf in opt or [] if leaf.dtype.kind == "i"]
    assert opt is not None and len(steps) == 1 and steps[0] >= 1

    # Execute + Assert: the server never aggregated it -> the same rows are trained again
    lost = parse_reply(handle_train(_train_message(cfg, spec, OffsetLedger()), cfg, node))
    assert lost.evaluation.rows == 500
    assert _committed(kafka_bootstrap, node.group, topic) < 0

    # Execute + Assert: a confirmation naming another record (a recreated topic) is ignored
    stale = OffsetLedger({silo: {0: (2, 12345)}})
    assert parse_reply(handle_train(_train_message(cfg, spec, stale), cfg, node)).evaluation.rows
    assert _committed(kafka_bootstrap, node.group, topic) < 0

    # Execute + Assert: the next message confirms the read -> committed, nothing new to read
    ledger = OffsetLedger()
    ledger.confirm_replies([(silo, raw), (other, raw)])
    again = parse_reply(handle_train(_train_message(cfg, spec, ledger), cfg, node))
    assert again.no_data
    assert _committed(kafka_bootstrap, node.group, topic) == 2
    assert _committed(kafka_bootstrap, node.group, topics.silo_batches(other)) < 0


def test_frames_of_another_spec_are_skipped(kafka_bootstrap: str, unique: str) -> None:
    # Prepare
    silo = 7000 + int(unique[:3], 16)
    ensure_topics(kafka_bootstrap, [silo])
    topic = topics.silo_batches(silo)
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, "old-spec", 200))
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, f"s-{unique}", 300))
    cfg = FLConfig(min_rows=10, model_name=f"m-{unique}", hidden=(8,))
    node = NodeSettings.from_node_config(
        {"silo-id": silo, "topic": topic, "bootstrap": kafka_bootstrap}, cfg.model_name
    )

    # Execute
    raw = handle_train(_train_message(cfg, f"s-{unique}"), cfg, node)
    reply = parse_reply(raw)

    # Assert: only the matching frames were used; the read (and later commit) covers both
    assert reply.evaluation.rows == 300
    assert reply.evaluation.extra is not None
    assert reply.evaluation.extra["skipped_frames"] == 1
    assert {p: o for p, (o, _t) in read_offsets(raw).items()} == {0: 2}

    # Execute + Assert: the run ends; its confirm-only message commits without a round
    ledger = OffsetLedger()
    ledger.confirm_replies([(silo, raw)])
    config = ledger.add_to(ConfigRecord({CONFIRM_ONLY: 1}))
    final = Message(RecordDict({CONFIG: config}), dst_node_id=1, message_type=MessageType.TRAIN)
    assert not handle_train(final, cfg, node).content.config_records
    assert _committed(kafka_bootstrap, node.group, topic) == 2
