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

``topics/schemas`` states the same rules; ``tests/unit/test_schema_agreement.py`` runs a
corpus through both and asserts they accept exactly the same records.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import orjson

from app.features.errors import InvalidRecord
from app.features.event_time import MAX_EVENT_TS, unit_hint
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

MAX_RECORD_BYTES = 64 * 1024
"""Largest accepted raw record, in bytes."""
MAX_ATTRS = 64
"""Largest number of entries of an ``attrs`` object."""
MAX_ATTR_VALUE = 1e9
"""Largest magnitude of an ``attrs`` value (finite in float32, safe in moment sums)."""
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
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_M: Any = object()  # sentinel: field absent (null is a value)


_KEY_END = re.compile(rb'"[ \t\n\r]*:')
"""End of an object key. Inside strings a quote is escaped, so this matches every key
and at most some escaped quotes followed by a colon: never fewer than the real keys."""


def _load(raw: bytes | bytearray | memoryview | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord("null value")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"record too large: {len(raw)} bytes > {MAX_RECORD_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"malformed JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidRecord(f"expected a JSON object, got {_json_type(obj)}")
    if len(_KEY_END.findall(raw)) > _count_keys(obj):
        _reject_duplicate_keys(bytes(raw))  # more key ends than keys: maybe a duplicate
    return obj


def _count_keys(obj: dict[str, Any]) -> int:
    n = 0
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        if type(value) is dict:
            n += len(value)
            stack.extend(v for v in value.values() if type(v) is dict or type(v) is list)
        else:
            stack.extend(v for v in value if type(v) is dict or type(v) is list)
    return n


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidRecord(f"duplicated key {key[:64]!r}")
            seen.add(key)
    return out


def _reject_duplicate_keys(raw: bytes) -> None:
    """Exact check with the standard parser (orjson keeps the last of duplicated keys)."""
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except InvalidRecord:
        raise
    except (ValueError, RecursionError) as exc:  # orjson parsed it; should not happen
        raise InvalidRecord(f"malformed JSON: {type(exc).__name__}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) is int or type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    return "object"


def _unknown(obj: dict[str, Any], allowed: frozenset[str]) -> None:
    if not allowed.issuperset(obj):
        extra = sorted(k for k in obj if k not in allowed)
        raise InvalidRecord(f"unknown field(s): {', '.join(repr(k) for k in extra[:5])}")


def _required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name, _M)
    if value is _M:
        raise InvalidRecord(f"missing required field {name!r}")
    return value


def _str(value: Any, name: str, min_len: int, max_len: int) -> str:
    if type(value) is not str or not min_len <= len(value) <= max_len:
        raise InvalidRecord(f"field {name!r}: must be a string of {min_len}..{max_len} characters")
    return value


def _num(value: Any, name: str, lo: float | None, hi: float | None) -> float:
    tp = type(value)
    if tp is int:
        value = float(value)
    elif tp is not float or not math.isfinite(value):
        raise InvalidRecord(f"field {name!r}: {_range_text('a finite number', lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidRecord(f"field {name!r}: {_range_text('a finite number', lo, hi)}")
    return float(value)


def _int(value: Any, name: str, lo: int, hi: int | None) -> int:
    tp = type(value)
    if tp is float and math.isfinite(value) and value.is_integer():
        value = int(value)
    elif tp is not int:
        raise InvalidRecord(f"field {name!r}: {_range_text('an integer', lo, hi)}")
    if value < lo or (hi is not None and value > hi):
        raise InvalidRecord(f"field {name!r}: {_range_text('an integer', lo, hi)}")
    return int(value)


def _range_text(kind: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"must be {kind} in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f"must be {kind} >= {lo:g}"
    return f"must be {kind}"


def _ts(value: Any, name: str) -> float:
    """Event time: finite seconds since the epoch in ``[0, MAX_EVENT_TS]``."""
    tp = type(value)
    if tp is int:
        value = float(value)
    elif tp is not float or not math.isfinite(value):
        raise InvalidRecord(f"field {name!r}: must be a finite number of seconds since the epoch")
    if value < 0.0:
        raise InvalidRecord(f"field {name!r}: must be >= 0 (seconds since the epoch)")
    if value > MAX_EVENT_TS:
        raise InvalidRecord(
            f"field {name!r}: {value:.6g} is not seconds since the epoch "
            f"(max {MAX_EVENT_TS:g}){unit_hint(value)}"
        )
    return float(value)


def _country(value: Any, name: str) -> str:
    if (
        type(value) is not str
        or len(value) != 2
        or not ("A" <= value[0] <= "Z" and "A" <= value[1] <= "Z")
    ):
        raise InvalidRecord(f"field {name!r}: must be a 2-letter upper-case country code")
    return value


def _enum(value: Any, name: str, allowed: frozenset[str], listed: Sequence[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise InvalidRecord(f"field {name!r}: must be one of {', '.join(listed)}")
    return value


def _attrs(value: Any) -> dict[str, float]:
    if type(value) is not dict:
        raise InvalidRecord("field 'attrs': must be an object of numbers")
    if len(value) > MAX_ATTRS:
        raise InvalidRecord(f"field 'attrs': at most {MAX_ATTRS} entries, got {len(value)}")
    out: dict[str, float] = {}
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise InvalidRecord("field 'attrs': names must have 1..64 characters")
        tp = type(item)
        if tp is int:
            item = float(item)
        elif tp is not float or not math.isfinite(item):
            raise InvalidRecord(f"field 'attrs.{key}': must be a finite number")
        if not -MAX_ATTR_VALUE <= item <= MAX_ATTR_VALUE:
            bound = f"{MAX_ATTR_VALUE:g}"
            raise InvalidRecord(f"field 'attrs.{key}': must be a number in [-{bound}, {bound}]")
        out[key] = item
    return out


def parse_customer(raw: bytes | bytearray | memoryview | None) -> Customer:
    """Parse and validate one ``bank.customers`` value.

    Raises
    ------
    InvalidRecord
        If the bytes are not a valid customer profile.
    """
    obj = _load(raw)
    _unknown(obj, _CUSTOMER_FIELDS)
    get = obj.get
    attrs = get("attrs", _M)
    return Customer(
        customer_id=_str(_required(obj, "customer_id"), "customer_id", 1, 64),
        silo=_int(_required(obj, "silo"), "silo", 0, None),
        ts=_ts(_required(obj, "ts"), "ts"),
        age=40 if (v := get("age", _M)) is _M else _int(v, "age", 16, 120),
        income_band=2 if (v := get("income_band", _M)) is _M else _int(v, "income_band", 0, 4),
        credit_limit=(
            5000.0 if (v := get("credit_limit", _M)) is _M else _num(v, "credit_limit", 0.0, 1e9)
        ),
        segment=(
            "retail"
            if (v := get("segment", _M)) is _M
            else _enum(v, "segment", _SEGMENT_SET, SEGMENTS)
        ),
        tenure_months=(
            0 if (v := get("tenure_months", _M)) is _M else _int(v, "tenure_months", 0, 1200)
        ),
        home_country="XX" if (v := get("home_country", _M)) is _M else _country(v, "home_country"),
        attrs=EMPTY_ATTRS if attrs is _M else _attrs(attrs),
    )


def parse_transaction(raw: bytes | bytearray | memoryview | None) -> Transaction:
    """Parse and validate one ``bank.transactions`` value.

    Raises
    ------
    InvalidRecord
        If the bytes are not a valid transaction.
    """
    obj = _load(raw)
    _unknown(obj, _TXN_FIELDS)
    get = obj.get
    label = get("label")
    if label is not None:
        if type(label) is bool or label not in (0, 1):
            raise InvalidRecord("field 'label': must be 0, 1 or null")
        label = int(label)
    attrs = get("attrs", _M)
    return Transaction(
        txn_id=_str(_required(obj, "txn_id"), "txn_id", 1, 64),
        customer_id=_str(_required(obj, "customer_id"), "customer_id", 1, 64),
        ts=_ts(_required(obj, "ts"), "ts"),
        amount=_num(_required(obj, "amount"), "amount", 0.0, 1e9),
        merchant_category=(
            "other"
            if (v := get("merchant_category", _M)) is _M
            else _str(v, "merchant_category", 1, 32)
        ),
        channel="pos"
        if (v := get("channel", _M)) is _M
        else _enum(v, "channel", _CHANNEL_SET, CHANNELS),
        country="XX" if (v := get("country", _M)) is _M else _country(v, "country"),
        silo=None if (v := get("silo", _M)) is _M else _int(v, "silo", 0, None),
        label=label,
        attrs=EMPTY_ATTRS if attrs is _M else _attrs(attrs),
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
    obj = _load(raw)
    rid = obj.get("request_id")
    request_id = rid if type(rid) is str and 1 <= len(rid) <= 128 else None
    try:
        if request_id is None:
            _str(_required(obj, "request_id"), "request_id", 1, 128)
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
            customer_id=_str(_required(obj, "customer_id"), "customer_id", 1, 64),
            question=None if (v := get("question", _M)) is _M else _str(v, "question", 0, 2000),
            intent=None if (v := get("intent", _M)) is _M else _str(v, "intent", 0, 64),
            reply_topic=reply_topic,
            sent_ts=None if (v := get("sent_ts", _M)) is _M else _num(v, "sent_ts", None, None),
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
