"""A record's columns for the pipeline runner (pure code): parse, validate, to columns.

``transaction`` and ``customer`` records are validated with the bank contracts
(:mod:`app.features.validation`); ``json`` records need only the key and time fields.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from app.features.validation import InvalidRecord, parse_customer, parse_transaction

__all__ = ["Parsed", "column", "customer_values", "record_values"]

logger = logging.getLogger(__name__)

_TXN_FIELDS = ("txn_id", "customer_id", "merchant_category", "channel", "country")
_TXN_NUMBERS = ("ts", "amount")
_CUSTOMER_STRINGS = ("segment", "home_country")
_CUSTOMER_NUMBERS = ("ts", "age", "income_band", "credit_limit", "tenure_months")


def record_values(schema: str, raw: bytes, key_field: str, time_field: str,
                   attrs: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """One record's columns (raises InvalidRecord)."""
    if schema == "transaction":
        t = parse_transaction(raw)
        out: dict[str, Any] = {n: getattr(t, n) for n in (*_TXN_FIELDS, *_TXN_NUMBERS)}
        out["silo"] = math.nan if t.silo is None else float(t.silo)
        out["label"] = math.nan if t.label is None else float(t.label)
        for a in attrs:
            out[f"attrs.{a}"] = t.attrs.get(a, 0.0)
        return out
    if schema == "customer":
        c = parse_customer(raw)
        out = customer_values(c, attrs)
        out["customer_id"] = c.customer_id
        return out
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord("value must be a JSON object")
    for need in (key_field, time_field):
        if obj.get(need) is None:
            raise InvalidRecord(f"missing field {need!r}")
    ts = obj[time_field]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise InvalidRecord(f"field {time_field!r}: must be a finite number (seconds)")
    obj[key_field] = str(obj[key_field])
    obj[time_field] = float(ts)
    return obj


def customer_values(c: Any, attrs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {n: float(getattr(c, n)) for n in _CUSTOMER_NUMBERS}
    out.update({n: getattr(c, n) for n in _CUSTOMER_STRINGS})
    out["silo"] = float(c.silo)
    for a in attrs:
        out[f"attrs.{a}"] = c.attrs.get(a, 0.0)
    return out


def column(values: list[Any]) -> np.ndarray:
    """float64 for numbers (None -> NaN), object arrays for anything else."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
           for v in values):  # fmt: skip
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)


class Parsed:
    """Valid records of a batch as plain values: one dict per record."""

    __slots__ = ("keys", "offsets", "raws", "values")

    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.raws: list[bytes] = []
        self.offsets: list[int] = []
