"""Hostile input on the pure path: nulls, tombstones, huge numbers, duplicate keys, DLQ size."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest

from app.features.dead_letter import (
    KEPT_PREFIX_BYTES,
    MAX_DEAD_LETTER_BYTES,
    dead_letter,
    dead_letter_key,
)
from app.features.event_time import StreamClock, TimePolicy
from app.features.profiles import decode_history
from app.features.records import Customer
from app.features.spec import FeatureSpec
from app.features.validation import (
    InvalidRecord,
    parse_chat_request,
    parse_customer,
    parse_transaction,
)
from app.stream.loop import StreamLoop
from app.stream.processor import StreamProcessor

NOW = 1_764_000_000.0  # the worker's clock in these tests (2025-11-24)
SPEC = FeatureSpec()


def _txn(**changes: Any) -> dict[str, Any]:
    base = {"txn_id": "t1", "customer_id": "c1", "ts": NOW - 60, "amount": 12.5}
    return {**base, **changes}


def _reason(parse: Any, raw: bytes | None) -> str:
    with pytest.raises(InvalidRecord) as info:
        parse(raw)
    return info.value.reason


@pytest.mark.parametrize("parse", [parse_transaction, parse_customer, parse_chat_request])
def test_a_null_value_is_invalid_with_reason_null_value(parse: Any) -> None:
    assert _reason(parse, None) == "null value"


@pytest.mark.parametrize(
    ("ts", "hint"),
    [
        (2**70, ""),  # crashed the worker at commit before (bucket start beyond 64 bits)
        (1e300, ""),
        (1_764_000_000_123, "looks like milliseconds"),
        (1_764_000_000_123_456, "looks like microseconds"),
        (1_764_000_000_123_456_789, "looks like nanoseconds"),
    ],
)
def test_event_times_beyond_the_contract_are_rejected_with_the_likely_unit(
    ts: float, hint: str
) -> None:
    raw = orjson.dumps(_txn(ts=0)).replace(b'"ts":0', b'"ts":' + str(ts).encode())
    reason = _reason(parse_transaction, raw)
    assert "is not seconds since the epoch" in reason
    assert hint in reason


def test_huge_integers_json_cannot_hold_in_64_bits_are_bounded_too() -> None:
    raw = b'{"customer_id":"c1","silo":18446744073709551616,"ts":1,"age":40}'
    assert parse_customer(raw).silo == 2**64  # a valid integer; check_silo rejects it later
    raw = b'{"txn_id":"t","customer_id":"c","ts":1,"amount":100000000000000000000000}'
    assert "field 'amount'" in _reason(parse_transaction, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"txn_id":"t","customer_id":"c","ts":1,"amount":5,"amount":999999}',
        b'{"txn_id":"t","customer_id":"c","ts":1,"amount":5 , "amount" : 6}',
        b'{"txn_id":"t","customer_id":"c","ts":1,"amount":5,"attrs":{"a":1,"a":2}}',
        b'{"txn_id":"t","txn_id":"t","customer_id":"c","ts":1,"amount":5}',
    ],
)
def test_duplicated_keys_are_rejected(raw: bytes) -> None:
    assert _reason(parse_transaction, raw).startswith("duplicated key")


def test_escaped_quotes_before_a_colon_are_not_mistaken_for_keys() -> None:
    raw = b'{"txn_id":"a\\":b\\":","customer_id":"c","ts":1,"amount":5}'
    assert parse_transaction(raw).txn_id == 'a":b":'
    chat = b'{"request_id":"r","customer_id":"c","question":"\\"x\\": y","extra":{"k":[{}]}}'
    assert parse_chat_request(chat).question == '"x": y'


@pytest.mark.parametrize(
    ("attrs", "part"),
    [({"x": 1e300}, "attrs.x"), ({"x": -2e9}, "attrs.x"), ({"": 1.0}, "1..64"),
     ({"y" * 65: 1.0}, "1..64")],
)  # fmt: skip
def test_attrs_are_bounded_so_feature_rows_stay_finite(attrs: dict[str, float], part: str) -> None:
    assert part in _reason(parse_transaction, orjson.dumps(_txn(attrs=attrs)))


@pytest.mark.parametrize(
    ("ts", "part"),
    [
        (NOW + 7200, "ahead of the worker's clock"),
        (NOW + 5 * 3600, "a local time sent as UTC?"),
        (253_402_300_000.0 / 10, "a wrong clock?"),  # year ~2770
        (0.0, "an unset timestamp"),
        (3600.0 * 5, "an unset timestamp"),
        (5_000_000.0, "looks like a duration"),
        (NOW - 40 * 365.25 * 86400, "40 years before"),
    ],
)
def test_time_policy_names_the_likely_mistake(ts: float, part: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        TimePolicy().check(ts, NOW)
    assert part in info.value.reason


def test_time_policy_accepts_replays_of_old_data_and_small_clock_skew() -> None:
    policy = TimePolicy()
    for ts in (NOW, NOW + 3000, NOW - 86400 * 365 * 21, 1_112_313_600.0):  # 2005: UCI replay
        assert policy.check(ts, NOW) == ts
    with pytest.raises(InvalidRecord):
        TimePolicy(max_ahead_s=0, max_back_s=10).check(NOW - 11, NOW)


def test_stream_clock_ignores_one_customers_outlier() -> None:
    clock = StreamClock(k=3)
    for i, cid in enumerate(("a", "b", "c", "d")):
        clock.observe(cid, 1000.0 + i)
    assert clock.now == 1001.0
    clock.observe("a", 1e10)  # one customer far ahead
    assert clock.now == 1002.0
    clock.observe("a", 2e10)  # the same customer again: still nothing
    assert clock.now == 1002.0
    clock.observe("b", 5000.0)  # honest progress of others moves it
    clock.observe("c", 6000.0)
    assert clock.now == 5000.0


def test_dead_letters_keep_small_originals_whole() -> None:
    raw = b'{"broken": '
    doc = orjson.loads(dead_letter("malformed", "bank.transactions", 2, 7, b"k", raw, 1))
    assert base64.b64decode(doc["value_b64"]) == raw
    assert base64.b64decode(doc["key_b64"]) == b"k"
    assert doc["truncated"] is False
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("bank.transactions", 2, 7)
    null = orjson.loads(dead_letter("null value", "t", 0, 1, None, None, 1))
    assert null["value_b64"] is None and null["key_b64"] is None and null["value_bytes"] is None


@pytest.mark.parametrize("size", [700_000, int(12.5 * 1024 * 1024)])
def test_dead_letters_of_huge_records_fit_and_prove_the_original(size: int) -> None:
    value = bytes(range(256)) * (size // 256)
    key = b"K" * 5000
    encoded = dead_letter("record too large", "bank.transactions", 0, 42, key, value, 1)
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES
    doc = orjson.loads(encoded)
    assert doc["truncated"] is True
    assert doc["value_bytes"] == len(value) and doc["key_bytes"] == len(key)
    assert doc["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert doc["key_sha256"] == hashlib.sha256(key).hexdigest()
    assert base64.b64decode(doc["value_b64"]) == value[:KEPT_PREFIX_BYTES]
    assert dead_letter_key(key) is None and dead_letter_key(b"c1") == b"c1"


def test_dead_letters_with_a_long_reason_full_of_escapes_still_fit() -> None:
    value = b"\x00" * 600_000  # base64 800 kB: fits only without a bloated reason
    encoded = dead_letter("\x01" * 5000, "t", 0, 0, None, value, 1)
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES


def _processor() -> tuple[StreamProcessor, StreamLoop]:
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    return processor, StreamLoop(SPEC, processor, outbox=None, follower=None)


def test_a_tombstone_deletes_the_customer_everywhere() -> None:
    # Prepare: a customer with a profile and two transactions, written at a commit
    processor, loop = _processor()
    now_ms = int(NOW * 1000)
    processor.on_customer(orjson.dumps(Customer("c1", 1, NOW - 100).to_dict()), b"c1", 3, now_ms)
    for i in range(2):
        raw = orjson.dumps(_txn(txn_id=f"t{i}", ts=NOW - 50 + i))
        joined = processor.on_transaction(raw, b"c1", 3, i, now_ms)
        assert joined is not None and not joined.profile_missing
        loop.on_joined(joined)
    processor.take_dirty()

    # Execute
    cid = processor.delete_customer(b"c1", 3)
    loop.forget_customer(cid)
    answer = loop.answer(parse_chat_request(b'{"request_id":"r","customer_id":"c1"}'))
    deleted = processor.take_deleted()
    later = processor.on_transaction(orjson.dumps(_txn(txn_id="t9")), b"c1", 3, 9, now_ms)

    # Assert
    assert cid == "c1"
    assert deleted == ({3: {"c1"}}, {3: {"c1"}})
    assert answer["status"] == "unknown_customer", answer
    assert later is not None and later.profile_missing
    assert later.aggregates["long_count"] == 0  # the deleted history is gone
    profiles, states = processor.take_dirty()
    assert profiles == {} and set(states[3]) == {"c1"}  # the new state only
    processor.delete_customer(b"c1", 3)
    processor.on_transaction(orjson.dumps(_txn(txn_id="t10")), b"c1", 3, 10, now_ms)
    # the profile leaves the table; the state is overwritten by the new one
    assert processor.take_deleted() == ({3: {"c1"}}, {3: set()})


def test_a_profile_after_its_tombstone_is_stored_again() -> None:
    processor, _loop = _processor()
    raw = orjson.dumps(Customer("c2", 0, NOW).to_dict())
    processor.on_customer(raw, b"c2", 1, int(NOW * 1000))
    processor.delete_customer(b"c2", 1)
    processor.on_customer(raw, b"c2", 1, int(NOW * 1000))
    profiles, _states = processor.take_dirty()
    assert list(profiles) == [1] and list(profiles[1]) == ["c2"]
    assert decode_history(profiles[1]["c2"]).versions == [parse_customer(raw)]
    assert processor.take_deleted() == ({1: set()}, {1: {"c2"}})


@pytest.mark.parametrize(
    ("key", "part"),
    [(None, "without a key"), (b"\xff\xfe", "not UTF-8"), (b"x" * 65, "not a customer id")],
)
def test_a_tombstone_without_a_usable_key_is_invalid(key: bytes | None, part: str) -> None:
    processor, _loop = _processor()
    with pytest.raises(InvalidRecord) as info:
        processor.delete_customer(key, 0)
    assert part in info.value.reason


def test_implausible_event_times_never_reach_state() -> None:
    processor, _loop = _processor()
    now_ms = int(NOW * 1000)
    for ts in (NOW + 86400, 0.0):
        with pytest.raises(InvalidRecord):
            processor.on_transaction(orjson.dumps(_txn(ts=ts)), b"c1", 0, 1, now_ms)
    assert processor.take_dirty() == ({}, {})
    with pytest.raises(InvalidRecord):
        customer = Customer("c1", 0, NOW * 1000).to_dict()
        processor.on_customer(orjson.dumps(customer), b"c1", 0, now_ms)


def _hourly(state: Any, n: int, t0: float) -> None:
    from app.features.vectorize import join_transaction

    for i in range(n):
        txn = parse_transaction(orjson.dumps(_txn(txn_id=f"h{i}", ts=t0 + i * 3600.0)))
        join_transaction(SPEC, txn, None, state)


def test_one_event_far_ahead_erases_no_window_and_no_gap() -> None:
    from app.features.vectorize import join_transaction
    from app.features.windows import CustomerWindows

    # Prepare: ten hourly transactions, then one 20 h ahead of them
    state = CustomerWindows()
    t0 = NOW - 40 * 3600
    _hourly(state, 10, t0)
    ahead = parse_transaction(orjson.dumps(_txn(txn_id="far", ts=t0 + 29 * 3600.0)))
    join_transaction(SPEC, ahead, None, state)

    # Execute: the next ordinary transaction, one hour after the last ordinary one
    nxt = parse_transaction(orjson.dumps(_txn(txn_id="next", ts=t0 + 10 * 3600.0)))
    window = join_transaction(SPEC, nxt, None, state).window

    # Assert: it sees its ten predecessors and the gap to the latest of them
    assert window.long_count == 10
    assert window.seconds_since_prev == 3600.0
    assert window.short_count == 0


def test_a_repeated_txn_id_never_counts_twice_and_changes_nothing() -> None:
    from app.features.vectorize import join_transaction
    from app.features.window_state import encode_state
    from app.features.windows import CustomerWindows

    state = CustomerWindows()
    _hourly(state, 3, NOW - 5 * 3600)
    before = encode_state(state)
    again = parse_transaction(orjson.dumps(_txn(txn_id="h1", ts=NOW - 60, amount=999.0)))
    with pytest.raises(InvalidRecord) as info:
        join_transaction(SPEC, again, None, state)
    assert "repeated txn_id 'h1'" in info.value.reason
    assert encode_state(state) == before


def test_a_transaction_older_than_the_pruned_history_is_refused() -> None:
    from app.features.vectorize import join_transaction
    from app.features.windows import CustomerWindows

    state = CustomerWindows()
    _hourly(state, 60, NOW - 60 * 3600)  # prunes everything older than ~26 h
    assert state.horizon is not None
    old = parse_transaction(orjson.dumps(_txn(txn_id="h0", ts=NOW - 60 * 3600)))  # a repeat
    with pytest.raises(InvalidRecord) as info:
        join_transaction(SPEC, old, None, state)
    assert info.value.reason.startswith("late event")


def test_version_1_window_states_are_still_read() -> None:
    from app.features.window_state import decode_state

    v1 = orjson.dumps([1, 7300.0, 2, 30.0, [[3600, 1, 10.0, 10.0, ["a"], ["DE"]],
                                            [7200, 1, 20.0, 20.0, ["b"], ["FR"]]]])  # fmt: skip
    state = decode_state(v1)
    assert state.count == 2 and state.last_ts == 7300.0
    assert [b[5] for b in state.buckets.values()] == [7200.0, 7300.0]


def test_one_customers_outlier_does_not_move_other_customers_as_of() -> None:
    # Prepare: four customers with transactions a minute ago
    processor, loop = _processor()
    now_ms = int(NOW * 1000)
    for i, cid in enumerate(("a", "b", "c", "d")):
        raw = orjson.dumps(_txn(txn_id=f"x{i}", customer_id=cid, ts=NOW - 60 + i))
        joined = processor.on_transaction(raw, cid.encode(), 0, i, now_ms)
        assert joined is not None
        loop.on_joined(joined)
    ask = b'{"request_id":"r","customer_id":"a"}'
    before = loop.answer(parse_chat_request(ask))["activity"]

    # Execute: customer d sends one event as far ahead as the policy allows
    raw = orjson.dumps(_txn(txn_id="x9", customer_id="d", ts=NOW + 3500))
    joined = processor.on_transaction(raw, b"d", 0, 9, now_ms)
    assert joined is not None
    loop.on_joined(joined)
    after = loop.answer(parse_chat_request(ask))["activity"]

    # Assert
    assert after["as_of"] == before["as_of"] <= NOW
    assert after["short"]["count"] == before["short"]["count"] == 1
