"""Raw bytes -> records, with hand-written checks that mirror ``topics/schemas``.

The checks run on every event of the stream worker, so they are plain Python (no
pydantic, no jsonschema): ``orjson.loads`` followed by type, range, length and enum
checks. JSON Schema semantics are followed where they matter: ``true``/``false`` are not
numbers, ``3.0`` is a valid integer, unknown fields are rejected where the schema says
``additionalProperties: false`` (customers, transactions). Chat requests allow unknown
fields (their schema does) but ``reply_topic`` must be a legal Kafka topic name, because
the worker will produce to it.

Every failure raises :class:`InvalidRecord` whose ``reason`` is short and meant for the
dead-letter record, e.g. ``"field 'amount': must be a finite number >= 0"``.

Stricter than a plain JSON parse, because one record must not corrupt state:

* a null value (Kafka tombstone) is ``"null value"`` (the customers agent treats it as a
  deletion before it gets here);
* duplicated keys in an object are rejected (``{"amount": 5, "amount": 999999}`` is
  ambiguous: parsers disagree on which one wins); a cheap count decides whether the exact
  check is needed;
* every number that reaches state or frames is bounded: ``ts`` <= :data:`MAX_EVENT_TS`
  (window bucket starts stay far inside 64 bits), ``attrs`` values in ``[-1e9, 1e9]``
  (finite in float32 feature rows), attribute names of 1..64 characters.

The strict JSON reading and the field checks live in :mod:`app.features.json_checks`;
``topics/schemas`` states the same rules; ``tests/unit/test_schema_agreement.py`` runs a
corpus through both and asserts they accept exactly the same records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from app.features.errors import InvalidRecord
from app.features.json_checks import (
    ABSENT,
    MAX_ATTR_VALUE,
    MAX_ATTRS,
    MAX_RECORD_BYTES,
    attrs_field,
    country_code,
    event_ts,
    integer,
    load_object,
    number,
    one_of,
    reject_unknown,
    required,
    string,
)
from app.features.records import EMPTY_ATTRS, ChatRequest, Customer, Transaction

__all__ = [
    "CHANNELS",
    "MAX_ATTRS",
    "MAX_ATTR_VALUE",
    "MAX_RECORD_BYTES",
    "SEGMENTS",
    "InvalidRecord",
    "check_key",
    "check_silo",
    "parse_chat_request",
    "parse_customer",
    "parse_tombstone_key",
    "parse_transaction",
]

logger = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("pos", "online", "atm", "transfer")
SEGMENTS: tuple[str, ...] = ("retail", "premium", "business", "student")

_CUSTOMER_FIELDS = frozenset(
    (
        "customer_id",
        "silo",
        "ts",
        "age",
        "income_band",
        "credit_limit",
        "segment",
        "tenure_months",
        "home_country",
        "attrs",
    )
)
_TXN_FIELDS = frozenset(
    (
        "txn_id",
        "customer_id",
        "ts",
        "amount",
        "merchant_category",
        "channel",
        "country",
        "silo",
        "label",
        "attrs",
    )
)
_CHANNEL_SET = frozenset(CHANNELS)
_SEGMENT_SET = frozenset(SEGMENTS)
_M = ABSENT  # field absent (null is a value)
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def parse_customer(raw: bytes | bytearray | memoryview | None) -> Customer:
    """Parse and validate one ``bank.customers`` value.

    Raises
    ------
    InvalidRecord
        If the bytes are not a valid customer profile.
    """
    obj = load_object(raw)
    reject_unknown(obj, _CUSTOMER_FIELDS)
    get = obj.get
    attrs = get("attrs", _M)
    return Customer(
        customer_id=string(required(obj, "customer_id"), "customer_id", 1, 64),
        silo=integer(required(obj, "silo"), "silo", 0, None),
        ts=event_ts(required(obj, "ts"), "ts"),
        age=40 if (v := get("age", _M)) is _M else integer(v, "age", 16, 120),
        income_band=2 if (v := get("income_band", _M)) is _M else integer(v, "income_band", 0, 4),
        credit_limit=(
            5000.0 if (v := get("credit_limit", _M)) is _M else number(v, "credit_limit", 0.0, 1e9)
        ),
        segment=(
            "retail"
            if (v := get("segment", _M)) is _M
            else one_of(v, "segment", _SEGMENT_SET, SEGMENTS)
        ),
        tenure_months=(
            0 if (v := get("tenure_months", _M)) is _M else integer(v, "tenure_months", 0, 1200)
        ),
        home_country="XX"
        if (v := get("home_country", _M)) is _M
        else country_code(v, "home_country"),
        attrs=EMPTY_ATTRS if attrs is _M else attrs_field(attrs),
    )


def parse_transaction(raw: bytes | bytearray | memoryview | None) -> Transaction:
    """Parse and validate one ``bank.transactions`` value.

    Raises
    ------
    InvalidRecord
        If the bytes are not a valid transaction.
    """
    obj = load_object(raw)
    reject_unknown(obj, _TXN_FIELDS)
    get = obj.get
    label = get("label")
    if label is not None:
        if type(label) is bool or label not in (0, 1):
            raise InvalidRecord("field 'label': must be 0, 1 or null")
        label = int(label)
    attrs = get("attrs", _M)
    return Transaction(
        txn_id=string(required(obj, "txn_id"), "txn_id", 1, 64),
        customer_id=string(required(obj, "customer_id"), "customer_id", 1, 64),
        ts=event_ts(required(obj, "ts"), "ts"),
        amount=number(required(obj, "amount"), "amount", 0.0, 1e9),
        merchant_category=(
            "other"
            if (v := get("merchant_category", _M)) is _M
            else string(v, "merchant_category", 1, 32)
        ),
        channel="pos"
        if (v := get("channel", _M)) is _M
        else one_of(v, "channel", _CHANNEL_SET, CHANNELS),
        country="XX" if (v := get("country", _M)) is _M else country_code(v, "country"),
        silo=None if (v := get("silo", _M)) is _M else integer(v, "silo", 0, None),
        label=label,
        attrs=EMPTY_ATTRS if attrs is _M else attrs_field(attrs),
    )


def parse_chat_request(raw: bytes | bytearray | memoryview | None) -> ChatRequest:
    """Parse and validate one ``chatbot.requests`` value.

    Unknown fields are ignored (the schema allows them). When the record is invalid but
    its ``request_id`` could be read, the raised :class:`InvalidRecord` carries it.

    Raises
    ------
    InvalidRecord
        If the bytes are not a valid chat request.
    """
    obj = load_object(raw)
    rid = obj.get("request_id")
    request_id = rid if type(rid) is str and 1 <= len(rid) <= 128 else None
    try:
        if request_id is None:
            string(required(obj, "request_id"), "request_id", 1, 128)
        get = obj.get
        reply_topic = get("reply_topic", _M)
        if reply_topic is _M:
            reply_topic = None
        elif (
            type(reply_topic) is not str
            or not 1 <= len(reply_topic) <= 249
            or not _TOPIC_CHARS.issuperset(reply_topic)
            or reply_topic in (".", "..")
        ):
            raise InvalidRecord("field 'reply_topic': must be a legal Kafka topic name")
        return ChatRequest(
            request_id=str(request_id),
            customer_id=string(required(obj, "customer_id"), "customer_id", 1, 64),
            question=None if (v := get("question", _M)) is _M else string(v, "question", 0, 2000),
            intent=None if (v := get("intent", _M)) is _M else string(v, "intent", 0, 64),
            reply_topic=reply_topic,
            sent_ts=None if (v := get("sent_ts", _M)) is _M else number(v, "sent_ts", None, None),
        )
    except InvalidRecord as exc:
        exc.request_id = request_id
        raise


def parse_tombstone_key(key: bytes | None) -> str:
    """The customer id a tombstone (null value on ``bank.customers``) deletes.

    Raises
    ------
    InvalidRecord
        If the key cannot be a customer id (then there is nothing to delete).
    """
    if key is None:
        raise InvalidRecord("null value without a key: no customer to delete")
    try:
        cid = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord("null value: its key is not UTF-8, so not a customer id") from None
    if not 1 <= len(cid) <= 64:
        raise InvalidRecord("null value: its key is not a customer id (1..64 characters)")
    return cid


def check_key(key: bytes | str | None, customer_id: str) -> None:
    """Check that a record key, if any, equals the record's ``customer_id``.

    Input topics are keyed by ``customer_id`` (co-partitioning depends on it); a record
    whose key disagrees would update the state of another partition's customer.
    """
    if key is None:
        return
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if text != customer_id:
        raise InvalidRecord(f"key {text[:64]!r} does not match customer_id {customer_id!r}")


def check_silo(silo: int, silo_ids: Sequence[int]) -> int:
    """Return ``silo`` if it is configured, else raise :class:`InvalidRecord`."""
    if silo not in silo_ids:
        raise InvalidRecord(f"unknown silo {silo} (configured: {_describe_ids(silo_ids)})")
    return silo


def _describe_ids(silo_ids: Sequence[int]) -> str:
    ids = sorted(silo_ids)
    if not ids:
        return "none"
    if len(ids) >= 2 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(str(i) for i in ids)
