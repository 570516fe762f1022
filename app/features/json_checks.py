"""Strict JSON objects and field checks, the building blocks of :mod:`app.features.validation`.

:func:`load_object` parses one raw record into a ``dict`` (size limit, a JSON object,
duplicated keys rejected); the field checks follow JSON Schema's semantics (``true`` is
not a number, ``3.0`` is an integer) and raise :class:`InvalidRecord` with a short reason
meant for the dead-letter record, e.g. ``"field 'amount': must be a finite number >= 0"``.
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

__all__ = [
    "ABSENT",
    "MAX_ATTRS",
    "MAX_ATTR_VALUE",
    "MAX_RECORD_BYTES",
    "attrs_field",
    "country_code",
    "event_ts",
    "integer",
    "json_type",
    "load_object",
    "number",
    "one_of",
    "reject_unknown",
    "required",
    "string",
]

logger = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024
"""Largest accepted raw record, in bytes."""
MAX_ATTRS = 64
"""Largest number of entries of an ``attrs`` object."""
MAX_ATTR_VALUE = 1e9
"""Largest magnitude of an ``attrs`` value (finite in float32, safe in moment sums)."""
ABSENT: Any = object()
"""What ``obj.get(name, ABSENT)`` returns for an absent field (null is a value)."""


_KEY_END = re.compile(rb'"[ \t\n\r]*:')
"""End of an object key. Inside strings a quote is escaped, so this matches every key
and at most some escaped quotes followed by a colon: never fewer than the real keys."""


def load_object(raw: bytes | bytearray | memoryview | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord("null value")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"record too large: {len(raw)} bytes > {MAX_RECORD_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"malformed JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidRecord(f"expected a JSON object, got {json_type(obj)}")
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


def json_type(value: object) -> str:
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


def reject_unknown(obj: dict[str, Any], allowed: frozenset[str]) -> None:
    if not allowed.issuperset(obj):
        extra = sorted(k for k in obj if k not in allowed)
        raise InvalidRecord(f"unknown field(s): {', '.join(repr(k) for k in extra[:5])}")


def required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name, ABSENT)
    if value is ABSENT:
        raise InvalidRecord(f"missing required field {name!r}")
    return value


def string(value: Any, name: str, min_len: int, max_len: int) -> str:
    if type(value) is not str or not min_len <= len(value) <= max_len:
        raise InvalidRecord(f"field {name!r}: must be a string of {min_len}..{max_len} characters")
    return value


def number(value: Any, name: str, lo: float | None, hi: float | None) -> float:
    tp = type(value)
    if tp is int:
        value = float(value)
    elif tp is not float or not math.isfinite(value):
        raise InvalidRecord(f"field {name!r}: {_range_text('a finite number', lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidRecord(f"field {name!r}: {_range_text('a finite number', lo, hi)}")
    return float(value)


def integer(value: Any, name: str, lo: int, hi: int | None) -> int:
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


def event_ts(value: Any, name: str) -> float:
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


def country_code(value: Any, name: str) -> str:
    if (
        type(value) is not str
        or len(value) != 2
        or not ("A" <= value[0] <= "Z" and "A" <= value[1] <= "Z")
    ):
        raise InvalidRecord(f"field {name!r}: must be a 2-letter upper-case country code")
    return value


def one_of(value: Any, name: str, allowed: frozenset[str], listed: Sequence[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise InvalidRecord(f"field {name!r}: must be one of {', '.join(listed)}")
    return value


def attrs_field(value: Any) -> dict[str, float]:
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
