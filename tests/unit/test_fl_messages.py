"""Flower records of a round: replies carry aggregates only, never raw rows."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency

from app.fl.messages import (
    ARRAYS,
    CONFIG,
    arrays_from_record,
    arrays_to_record,
    build_reply,
    build_server_config,
    parse_reply,
    parse_train_message,
)
from app.fl.rounds import prequential_round
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.params import init_arrays, param_names

CFG = ModelConfig(n_features=8, hidden=(4,), epochs=1)


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower stamps messages with the identity of the running task; fake one in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _train_message(mean: np.ndarray | None = None, std: np.ndarray | None = None) -> Message:
    record = RecordDict(
        {
            ARRAYS: arrays_to_record(init_arrays(CFG), param_names(CFG)),
            CONFIG: build_server_config(spec_version="v1", n_features=8, mean=mean, std=std),
        }
    )
    record[CONFIG]["server-round"] = 4
    record[CONFIG]["proximal-mu"] = 0.25
    return Message(record, dst_node_id=1, message_type=MessageType.TRAIN)


def _reply(rows: int, seed: int = 0) -> tuple[Message, np.ndarray]:
    msg = _train_message()
    ins = parse_train_message(msg)
    X, y = learnable_rows(np.random.default_rng(seed), rows)
    result = prequential_round(arrays_from_record(ins.arrays_record, param_names(CFG)), X, y, CFG)
    reply = build_reply(
        msg,
        silo=3,
        topic="silo.3.batches",
        arrays_record=ins.arrays_record,
        result=result,
        n_features=8,
    )
    return reply, X


def _payload(msg: Message) -> tuple[bytes, int]:
    """All bytes and the number of scalar values a reply carries."""
    chunks: list[bytes] = []
    values = 0
    for record in msg.content.array_records.values():
        for arr in record.values():
            chunks.append(arr.numpy().tobytes())
            values += arr.numpy().size
    for mrec in msg.content.metric_records.values():
        for v in mrec.values():
            chunks.append(np.asarray(v, np.float32).tobytes())
            values += np.size(v)
    for crec in msg.content.config_records.values():
        for v in crec.values():
            if not isinstance(v, str):
                chunks.append(np.asarray(v, np.float32).tobytes())
            values += len(v) if isinstance(v, list) else 1
    return b"".join(chunks), values


def test_train_message_round_trip() -> None:
    mean, std = np.arange(8, dtype=np.float32), np.ones(8, dtype=np.float32)
    ins = parse_train_message(_train_message(mean, std))
    assert (ins.server_round, ins.spec_version, ins.n_features, ins.proximal_mu) == (
        4,
        "v1",
        8,
        0.25,
    )
    assert ins.mean is not None and np.array_equal(ins.mean, mean)
    got = arrays_from_record(ins.arrays_record, param_names(CFG))
    assert all(np.array_equal(a, b) for a, b in zip(got, init_arrays(CFG), strict=True))


def test_reply_carries_no_raw_rows() -> None:
    # Prepare + Execute
    small, _ = _reply(100)
    large, X = _reply(5000, seed=1)
    blob, values = _payload(large)

    # Assert: size independent of the rows; no row (as float32 bytes) inside the payload
    assert values == _payload(small)[1]
    assert values < X.size
    assert not any(X[i].tobytes() in blob for i in range(0, X.shape[0], 7))
    parsed = parse_reply(large)
    assert parsed.evaluation.rows == 5000 and parsed.moments.count == 5000
    assert parsed.evaluation.extra is not None
    assert parsed.evaluation.extra["reply_values"] == values


def test_no_data_reply_has_weight_zero_and_same_keys() -> None:
    msg = _train_message()
    ins = parse_train_message(msg)
    idle = build_reply(
        msg, silo=3, topic="t", arrays_record=ins.arrays_record, result=None, n_features=8
    )
    busy, _ = _reply(200)
    parsed = parse_reply(idle)
    assert parsed.no_data and not parsed.contributes and parsed.evaluation.n_examples == 0
    # Flower's own consistency check accepts a mixture of idle and busy replies
    validate_message_reply_consistency(
        [idle.content, busy.content], weighted_by_key="num-examples", check_arrayrecord=True
    )


def test_parse_reply_rejects_foreign_content() -> None:
    foreign = Message(
        RecordDict({"arrays": ArrayRecord(), "m": MetricRecord({"x": 1}), "c": ConfigRecord()}),
        reply_to=_train_message(),
    )
    with pytest.raises(KeyError):
        parse_reply(foreign)
