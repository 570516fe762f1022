"""Validation turns raw bytes into records and rejects each class of bad input clearly."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from app.features.records import ChatRequest, Customer, Transaction
from app.features.validation import (
    MAX_RECORD_BYTES,
    InvalidRecord,
    check_key,
    check_silo,
    parse_chat_request,
    parse_customer,
    parse_transaction,
)
from topics.catalogue import SCHEMA_DIR

GOOD_TXN: dict[str, Any] = {
    "txn_id": "t1",
    "customer_id": "c1",
    "ts": 1_700_000_000.5,
    "amount": 12.5,
    "merchant_category": "grocery",
    "channel": "online",
    "country": "DE",
    "silo": 1,
    "label": 0,
    "attrs": {"risk": 0.5, "n": 3},
}
GOOD_CUSTOMER: dict[str, Any] = {
    "customer_id": "c1",
    "silo": 2,
    "ts": 1_700_000_000,
    "age": 33,
    "income_band": 3,
    "credit_limit": 8000,
    "segment": "premium",
    "tenure_months": 24,
    "home_country": "FR",
    "attrs": {"score": 1.5},
}


def _txn(**changes: Any) -> bytes:
    obj = {**GOOD_TXN, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP})


def _customer(**changes: Any) -> bytes:
    obj = {**GOOD_CUSTOMER, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP})


_DROP = object()


def test_parse_transaction_accepts_a_full_record() -> None:
    # Execute
    txn = parse_transaction(_txn())

    # Assert
    assert txn == Transaction(
        txn_id="t1",
        customer_id="c1",
        ts=1_700_000_000.5,
        amount=12.5,
        merchant_category="grocery",
        channel="online",
        country="DE",
        silo=1,
        label=0,
        attrs={"risk": 0.5, "n": 3.0},
    )
    assert isinstance(txn.attrs["n"], float)


def test_parse_transaction_applies_schema_defaults() -> None:
    # Prepare
    raw = b'{"txn_id":"t","customer_id":"c","ts":0,"amount":0}'

    # Execute
    txn = parse_transaction(raw)

    # Assert
    assert (txn.merchant_category, txn.channel, txn.country) == ("other", "pos", "XX")
    assert txn.silo is None and txn.label is None and dict(txn.attrs) == {}
    assert isinstance(txn.ts, float) and isinstance(txn.amount, float)


def test_parse_customer_accepts_full_and_minimal_records() -> None:
    # Execute
    full = parse_customer(_customer())
    minimal = parse_customer(b'{"customer_id":"c9","silo":0,"ts":5}')

    # Assert
    assert full.segment == "premium" and full.credit_limit == 8000.0 and full.age == 33
    assert minimal == Customer(customer_id="c9", silo=0, ts=5.0)


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    # Execute
    customer = parse_customer(_customer(age=30.0, silo=1.0))

    # Assert
    assert customer.age == 30 and type(customer.age) is int and customer.silo == 1


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b'"text"', "expected a JSON object, got string"),
        (b"NaN", "malformed JSON"),
        (b'{"txn_id":"t","customer_id":"c","ts":0,"amount":1e999}', "malformed JSON"),
        (_txn(txn_id=_DROP), "missing required field 'txn_id'"),
        (_txn(amount=_DROP), "missing required field 'amount'"),
        (_txn(extra=1), "unknown field(s): 'extra'"),
        (_txn(txn_id=""), "field 'txn_id': must be a string of 1..64"),
        (_txn(txn_id="x" * 65), "field 'txn_id'"),
        (_txn(customer_id=7), "field 'customer_id'"),
        (_txn(amount=-1), "field 'amount': must be a finite number in [0, 1e+09]"),
        (_txn(amount=2e9), "field 'amount'"),
        (_txn(amount="12"), "field 'amount'"),
        (_txn(amount=True), "field 'amount'"),
        (_txn(amount=None), "field 'amount'"),
        (_txn(ts=-5), "field 'ts': must be >= 0"),
        (_txn(channel="mail"), "field 'channel': must be one of pos, online, atm, transfer"),
        (_txn(country="de"), "field 'country': must be a 2-letter upper-case country code"),
        (_txn(country="DEU"), "field 'country'"),
        (_txn(merchant_category="m" * 33), "field 'merchant_category'"),
        (_txn(silo=-1), "field 'silo': must be an integer >= 0"),
        (_txn(silo=True), "field 'silo'"),
        (_txn(silo=1.5), "field 'silo'"),
        (_txn(silo=None), "field 'silo'"),
        (_txn(label=2), "field 'label': must be 0, 1 or null"),
        (_txn(label=True), "field 'label'"),
        (_txn(attrs=[1]), "field 'attrs': must be an object of numbers"),
        (_txn(attrs={"a": "x"}), "field 'attrs.a': must be a finite number"),
        (_txn(attrs={"a": False}), "field 'attrs.a'"),
        (_txn(attrs={f"k{i}": 1 for i in range(65)}), "at most 64 entries"),
    ],
)
def test_parse_transaction_rejects_bad_input_with_a_reason(raw: bytes, reason_part: str) -> None:
    # Execute
    with pytest.raises(InvalidRecord) as info:
        parse_transaction(raw)

    # Assert
    assert reason_part in info.value.reason
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (_customer(silo=_DROP), "missing required field 'silo'"),
        (_customer(age=15), "field 'age': must be an integer in [16, 120]"),
        (_customer(age=None), "field 'age'"),
        (_customer(income_band=5), "field 'income_band'"),
        (_customer(segment="vip"), "field 'segment': must be one of retail"),
        (_customer(tenure_months=1201), "field 'tenure_months'"),
        (_customer(home_country="F1"), "field 'home_country'"),
        (_customer(credit_limit=float("inf")), "field 'credit_limit'"),
        (_customer(nickname="x"), "unknown field(s): 'nickname'"),
    ],
)
def test_parse_customer_rejects_bad_input_with_a_reason(raw: bytes, reason_part: str) -> None:
    # Execute
    with pytest.raises(InvalidRecord) as info:
        parse_customer(raw)

    # Assert
    assert reason_part in info.value.reason


def test_non_finite_numbers_are_rejected_even_if_the_json_layer_let_them_through() -> None:
    # Prepare: orjson never yields NaN, so exercise the check through the number helper
    from app.features.json_checks import attrs_field, number

    # Execute / Assert
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(InvalidRecord, match="finite"):
            number(bad, "x", 0.0, None)
        with pytest.raises(InvalidRecord, match="finite"):
            attrs_field({"a": bad})


def test_oversized_records_are_rejected_before_parsing() -> None:
    # Prepare
    raw = b" " * (MAX_RECORD_BYTES + 1)

    # Execute
    with pytest.raises(InvalidRecord) as info:
        parse_transaction(raw)

    # Assert
    assert "record too large" in info.value.reason


def test_records_round_trip_through_to_dict() -> None:
    # Prepare
    txn = parse_transaction(_txn())
    unlabelled = Transaction("t2", "c1", 1.0, 2.0)
    customer = parse_customer(_customer())

    # Execute / Assert
    assert parse_transaction(orjson.dumps(txn.to_dict())) == txn
    assert parse_transaction(orjson.dumps(unlabelled.to_dict())) == unlabelled
    assert parse_customer(orjson.dumps(customer.to_dict())) == customer


def test_record_fields_match_the_json_schemas() -> None:
    # Prepare
    txn_schema = json.loads((SCHEMA_DIR / "transaction.schema.json").read_text())
    customer_schema = json.loads((SCHEMA_DIR / "customer.schema.json").read_text())

    # Execute
    txn_fields = set(Transaction.__dataclass_fields__)
    customer_fields = set(Customer.__dataclass_fields__)

    # Assert
    assert txn_fields == set(txn_schema["properties"])
    assert customer_fields == set(customer_schema["properties"])


def test_parse_chat_request_accepts_good_requests_and_ignores_unknown_fields() -> None:
    # Prepare
    raw = orjson.dumps(
        {
            "request_id": "r1",
            "customer_id": "c1",
            "question": "why?",
            "intent": "risk",
            "reply_topic": "chatbot.responses",
            "sent_ts": 12,
            "locale": "de",
        }
    )

    # Execute
    request = parse_chat_request(raw)

    # Assert
    assert request == ChatRequest("r1", "c1", "why?", "risk", "chatbot.responses", 12.0)
    assert parse_chat_request(orjson.dumps(request.to_dict())) == request


@pytest.mark.parametrize(
    ("obj", "reason_part", "request_id"),
    [
        ({"customer_id": "c1"}, "missing required field 'request_id'", None),
        ({"request_id": "", "customer_id": "c1"}, "field 'request_id'", None),
        ({"request_id": "r1"}, "missing required field 'customer_id'", "r1"),
        ({"request_id": "r1", "customer_id": "c", "question": "q" * 2001}, "'question'", "r1"),
        ({"request_id": "r1", "customer_id": "c", "reply_topic": "a/b"}, "Kafka topic", "r1"),
        ({"request_id": "r1", "customer_id": "c", "sent_ts": "now"}, "'sent_ts'", "r1"),
    ],
)
def test_parse_chat_request_rejects_and_keeps_the_request_id(
    obj: dict[str, Any], reason_part: str, request_id: str | None
) -> None:
    # Execute
    with pytest.raises(InvalidRecord) as info:
        parse_chat_request(orjson.dumps(obj))

    # Assert
    assert reason_part in info.value.reason
    assert info.value.request_id == request_id


def test_check_silo_names_the_configured_silos() -> None:
    # Execute
    with pytest.raises(InvalidRecord) as info:
        check_silo(7, (0, 1, 2))

    # Assert
    assert info.value.reason == "unknown silo 7 (configured: 0..2)"
    assert check_silo(2, (0, 1, 2)) == 2
    with pytest.raises(InvalidRecord, match=r"configured: 1, 5\)"):
        check_silo(0, (5, 1))


def test_check_key_requires_the_customer_id_as_key() -> None:
    # Execute / Assert
    check_key(None, "c1")
    check_key(b"c1", "c1")
    check_key("c1", "c1")
    with pytest.raises(InvalidRecord, match="does not match customer_id"):
        check_key(b"c2", "c1")
