"""The offset ledger: replies say where a silo's read ended; the server confirms them."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from app.fl.offset_ledger import (
    OffsetLedger,
    attach_read_offsets,
    confirmed_for,
    read_offsets,
)


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower stamps messages with the identity of the running task; fake one in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _reply(next_offsets: dict[int, int]) -> Message:
    msg = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=1,
                  message_type=MessageType.TRAIN)  # fmt: skip
    stamps = {p: 1_700_000_000_000 + o for p, o in next_offsets.items()}
    return attach_read_offsets(Message(RecordDict({}), reply_to=msg), next_offsets, stamps)


T = 1_700_000_000_000


def test_reply_carries_where_the_read_ended() -> None:
    assert read_offsets(_reply({2: 40, 0: 17})) == {0: (17, T + 17), 2: (40, T + 40)}


def test_confirmations_reach_only_their_silo_newest_first() -> None:
    # Prepare: silo 3 aggregated twice, silo 4 once
    ledger = OffsetLedger()
    ledger.confirm_replies([(3, _reply({0: 10})), (4, _reply({0: 7, 1: 2}))])
    ledger.confirm_replies([(3, _reply({0: 25}))])

    # Execute: the next train message's config, as a ClientApp reads it
    config = ledger.add_to(ConfigRecord({"server-round": 5}))

    # Assert
    assert confirmed_for(config, 3) == {0: (25, T + 25)}
    assert confirmed_for(config, 4) == {0: (7, T + 7), 1: (2, T + 2)}
    assert confirmed_for(config, 9) == {}
    assert confirmed_for(ConfigRecord({}), 3) == {}  # a server without a ledger


def test_ledger_survives_a_server_restart_through_the_round_metrics() -> None:
    ledger = OffsetLedger({3: {0: (25, T)}, 4: {1: (2, T)}})
    doc = ledger.as_json()
    assert doc == {"3": {"0": [25, T]}, "4": {"1": [2, T]}}
    assert OffsetLedger.from_json(doc).confirmed == ledger.confirmed
    assert OffsetLedger.from_json(None).confirmed == {}


def test_malformed_confirmation_is_refused() -> None:
    config = ConfigRecord({"confirmed-silos": [1, 2], "confirmed-partitions": [0],
                           "confirmed-next": [5], "confirmed-stamps": [T]})  # fmt: skip
    with pytest.raises(ValueError, match="differ in length"):
        confirmed_for(config, 1)
