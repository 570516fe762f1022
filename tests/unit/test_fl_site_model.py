"""The frame a site's ClientApp relays is the server's frame in every weight (no Kafka here;
tests/integration/test_fl_site_kafka.py relays it on a real site broker)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from app.fl.config import DEFAULTS, FLConfig
from app.fl.messages import ARRAYS, CONFIG, arrays_to_record, build_server_config
from app.fl.model_store import make_model_frame
from app.fl.site_model import relay_global_model, site_frame
from app.kafka.principals import Grant, site_grants
from app.model.frame import decode_model
from app.model.params import init_arrays, param_names
from app.model.standardize import MomentStats
from topics import MODEL_GLOBAL

CFG = FLConfig.from_run_config({**DEFAULTS, "n-features": 8, "hidden": "4", "model-name": "m"})


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower stamps messages with the identity of the running task; fake one in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _server_model(round_: int) -> tuple[list[np.ndarray], MomentStats]:
    rng = np.random.default_rng(round_)
    arrays = [
        a + rng.normal(size=a.shape).astype(np.float32) for a in init_arrays(CFG.model_config(8))
    ]
    return arrays, MomentStats.from_rows(rng.normal(3.0, 2.0, size=(50, 8)))


def _message(arrays: list[np.ndarray], moments: MomentStats, model_round: int) -> Message:
    mean, std = moments.mean_std()
    config = build_server_config(
        spec_version="v1", n_features=8, mean=mean, std=std, model_round=model_round
    )
    config["server-round"] = model_round + 1
    config["proximal-mu"] = 0.1  # FedProx: a client-side setting, not the model's
    names = param_names(CFG.model_config(8))
    content = RecordDict({ARRAYS: arrays_to_record(arrays, names), CONFIG: config})
    return Message(content, dst_node_id=1, message_type=MessageType.TRAIN)


def test_the_relayed_frame_is_the_published_one_in_every_weight() -> None:
    # Prepare: the frame the server published after round 3, and the next train message
    arrays, moments = _server_model(3)
    published, version = make_model_frame(
        model_name="m", round_=3, arrays=arrays, config=CFG.model_config(8), spec_version="v1",
        moments=moments, metrics={"whole_run": {"silos": {"0": 1}}},
    )  # fmt: skip

    # Execute
    built = site_frame(_message(arrays, moments, 3), CFG, "site-7")

    # Assert
    assert built is not None and built[1] == version
    ours, theirs = decode_model(built[0]), decode_model(published)
    assert all(np.array_equal(a, b) for a, b in zip(ours.arrays, theirs.arrays, strict=True))
    assert np.array_equal(ours.mean, theirs.mean) and np.array_equal(ours.std, theirs.std)
    for field in ("model_name", "round", "spec_version", "model_version", "n_features", "config"):
        assert getattr(ours.meta, field) == getattr(theirs.meta, field), field
    assert ours.meta.metrics == {"relayed_by": "site-7"}  # the server's per-silo figures stay


def test_an_untrained_model_or_a_message_without_one_is_not_relayed() -> None:
    arrays, moments = _server_model(1)
    assert site_frame(_message(arrays, moments, 0), CFG, "site-7") is None
    bare = Message(RecordDict({CONFIG: ConfigRecord({"model-round": 2})}), dst_node_id=1,
                   message_type=MessageType.TRAIN)  # fmt: skip
    assert site_frame(bare, CFG, "site-7") is None


def test_a_failed_relay_is_logged_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arrays, moments = _server_model(2)
    msg = _message(arrays, moments, 2)
    assert relay_global_model(msg, CFG, "") is None  # not a site: nothing to do
    with caplog.at_level(logging.WARNING):
        assert relay_global_model(msg, CFG, str(tmp_path / "missing.conf")) is None
    assert "could not relay the global model" in caplog.text


def test_the_relay_may_write_the_model_topic_and_nothing_else() -> None:
    assert set(site_grants([7])) == {
        Grant("site-7", "TOPIC", MODEL_GLOBAL, "WRITE"),
        Grant("site-7", "TOPIC", MODEL_GLOBAL, "DESCRIBE"),
    }
