"""Property tests (hypothesis) on the pure validation and state code.

* Random mutations of valid events, at field and byte level, never make ``parse_*``, the
  event-time policy, the key check or the join raise anything but ``InvalidRecord``.
* For any sequence of accepted transactions of one customer the window state survives
  encode/decode unchanged, its encoding never fails (the commit-time crash of issue 9),
  and every feature row is finite.
* A dead letter of any bytes is valid JSON of at most ``MAX_DEAD_LETTER_BYTES``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.features.dead_letter import MAX_DEAD_LETTER_BYTES, dead_letter
from app.features.event_time import TimePolicy
from app.features.spec import FeatureSpec
from app.features.validation import (
    InvalidRecord,
    check_key,
    parse_chat_request,
    parse_customer,
    parse_transaction,
)
from app.pipeline.state import decode_key_state, encode_key_state
from app.stream.processor import StreamProcessor
from tests.hostile_corpus import GOOD, NOW, dumps

SPEC = FeatureSpec(txn_attrs=("risk",), profile_attrs=("score",))
POLICY = TimePolicy()
PARSERS = {"transaction": parse_transaction, "customer": parse_customer, "chat": parse_chat_request}
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: Any, kind: str) -> bytes:
    """A valid record with a few fields replaced, dropped or added, maybe byte-flipped."""
    doc = dict(GOOD[kind])
    names = [*doc, "attrs", "extra", "label", "silo"]
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(names))
        action = draw(st.sampled_from(["replace", "drop", "nudge"]))
        if action == "drop":
            doc.pop(name, None)
        elif action == "nudge" and isinstance(doc.get(name), int | float):
            nudged = doc[name] * draw(st.sampled_from([-1, 0, 1000, 1e-3, 1e6, 2**40]))
            if math.isfinite(nudged):  # JSON has no infinity (seen: 1e300 * 1e6)
                doc[name] = nudged
        else:
            doc[name] = draw(json_values)
    raw = dumps(doc)
    if draw(st.booleans()):
        raw = bytearray(raw)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(raw) - 1))
            op = draw(st.sampled_from(["flip", "insert", "delete"]))
            if op == "flip":
                raw[i] = draw(st.integers(0, 255))
            elif op == "insert":
                raw[i:i] = draw(st.binary(min_size=1, max_size=4))
            else:
                del raw[i]
        raw = bytes(raw)
    return raw


@FAST
@given(kind=st.sampled_from(sorted(PARSERS)), data=st.data())
def test_mutated_records_raise_nothing_but_invalid_record(kind: str, data: Any) -> None:
    raw = data.draw(mutated(kind))
    key = data.draw(st.none() | st.binary(max_size=70) | st.just(b"c-1"))
    try:
        record = PARSERS[kind](raw)
        check_key(key, record.customer_id)
        if kind != "chat":
            POLICY.check(record.ts, NOW)
    except InvalidRecord as exc:
        assert exc.reason  # a reason for the dead letter, always


@st.composite
def transaction_streams(draw: Any) -> list[bytes]:
    """Transactions of one customer: valid ones around NOW and hostile mutations of them."""
    out = []
    for i in range(draw(st.integers(1, 25))):
        doc = dict(GOOD["transaction"])
        doc["txn_id"] = draw(st.sampled_from([f"t{i}", "t0", "t1"]))  # repeats on purpose
        doc["ts"] = NOW + draw(st.floats(-3 * 86400, 3600, allow_nan=False))
        doc["amount"] = draw(st.floats(0, 1e9, allow_nan=False))
        doc["merchant_category"] = draw(st.sampled_from(["a", "b", "c" * 32]))
        doc.pop("silo")
        if draw(st.booleans()):
            doc["attrs"] = {"risk": draw(st.floats(-1e9, 1e9, allow_nan=False))}
        out.append(draw(mutated("transaction")) if draw(st.integers(0, 4)) == 0 else dumps(doc))
    return out


@FAST
@given(stream=transaction_streams())
def test_accepted_transactions_leave_a_state_that_survives_encode_decode(
    stream: list[bytes],
) -> None:
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    accepted = 0
    for offset, raw in enumerate(stream):
        try:
            joined = processor.on_transaction(raw, b"c-1", 0, offset, int(NOW * 1000))
        except InvalidRecord:
            continue
        assert joined is not None
        accepted += 1
        assert np.isfinite(joined.row).all(), joined.row
        _profiles, states = processor.take_dirty()  # the commit-time step that crashed before
        data = states[0]["c-1"]
        decoded = decode_key_state(data)
        assert encode_key_state(decoded) == data and decoded.offset == offset
    if accepted:
        windows = processor.window_state("c-1").windows[0]
        assert windows.n == accepted
        ids = [i for b in windows.buckets.values() for i in b[-1]]
        assert len(ids) == len(set(ids)), "a txn_id counted twice"


@FAST
@given(
    key=st.none() | st.binary(max_size=2000),
    value=st.none() | st.binary(max_size=4000),
    big=st.integers(0, 3),
    reason=st.text(max_size=3000),
)
def test_a_dead_letter_of_any_bytes_fits(
    key: bytes | None, value: bytes | None, big: int, reason: str
) -> None:
    if big and value is not None:
        value = value * (big * 400)  # up to ~5 MB
    encoded = dead_letter(reason, "bank.transactions", 3, 2**40, key, value)
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES
    doc = orjson.loads(encoded)
    assert doc["value_bytes"] == (None if value is None else len(value))
