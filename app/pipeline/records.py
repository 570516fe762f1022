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

__all__ = [
    "Parsed",
    "RecordReader",
    "column",
    "customer_values",
    "record_values",
    "transaction_names",
    "transaction_row",
]

logger = logging.getLogger(__name__)

_TXN_FIELDS = ("txn_id", "customer_id", "merchant_category", "channel", "country")
_TXN_NUMBERS = ("ts", "amount")
_CUSTOMER_STRINGS = ("segment", "home_country")
_CUSTOMER_NUMBERS = ("ts", "age", "income_band", "credit_limit", "tenure_months")


def transaction_names(attrs: Sequence[str]) -> tuple[str, ...]:
    """The columns of a ``transaction`` record, in order (see :func:`transaction_row`)."""
    return (*_TXN_FIELDS, *_TXN_NUMBERS, "silo", "label", *(f"attrs.{a}" for a in attrs))


def transaction_row(raw: bytes, attrs: Sequence[str]) -> tuple[Any, ...]:
    """A ``transaction`` record's values in :func:`transaction_names` order (raises
    InvalidRecord): text fields, then numbers (float; NaN for no silo or label)."""
    t = parse_transaction(raw)
    nan = math.nan
    return (
        t.txn_id, t.customer_id, t.merchant_category, t.channel, t.country, t.ts, t.amount,
        nan if t.silo is None else float(t.silo), nan if t.label is None else float(t.label),
        *(t.attrs.get(a, 0.0) for a in attrs),
    )  # fmt: skip


def record_values(schema: str, raw: bytes, key_field: str, time_field: str,
                   attrs: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """One record's columns (raises InvalidRecord)."""
    if schema == "transaction":
        return dict(zip(transaction_names(attrs), transaction_row(raw, attrs), strict=True))
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


class RecordReader:
    """A source's records as batch columns: :meth:`read` one record, :meth:`columns` all.

    ``transaction`` records become tuples of known fields and types (one array per field,
    no per-value type checks); other schemas a dict each (a field may be absent in some).
    Either way the columns are those of :func:`record_values` and :func:`column`.
    """

    def __init__(self, schema: str, key: str, time: str, attrs: Sequence[str]) -> None:
        self.schema, self.key, self.time, self.attrs = schema, key, time, tuple(attrs)
        self.names = transaction_names(attrs) if schema == "transaction" else ()
        self._key_i = self.names.index(key) if key in self.names else -1
        self._time_i = self.names.index(time) if time in self.names else -1
        n_text = len(_TXN_FIELDS)
        self._dtypes = [object if i < n_text else np.float64 for i in range(len(self.names))]

    def read(self, raw: bytes) -> tuple[Any, Any, Any]:
        """``(values, key value, time value)`` of one record (raises InvalidRecord)."""
        if self._key_i >= 0 and self._time_i >= 0:
            row = transaction_row(raw, self.attrs)
            return row, row[self._key_i], row[self._time_i]
        values = record_values(self.schema, raw, self.key, self.time, self.attrs)
        return values, values[self.key], values[self.time]

    def columns(self, values: list[Any]) -> dict[str, np.ndarray]:
        """The batch's columns from the :meth:`read` values of its records."""
        if self._key_i >= 0 and self._time_i >= 0:
            cols = zip(*values, strict=True)
            return {
                name: np.array(col, dtype=dtype)
                for name, col, dtype in zip(self.names, cols, self._dtypes, strict=True)
            }
        fields = dict.fromkeys(n for v in values for n in v)  # a field may be absent
        return {name: column([v.get(name) for v in values]) for name in fields}


class Parsed:
    """Valid records of a batch as plain values (:meth:`RecordReader.read`'s, one each)."""

    __slots__ = ("keys", "offsets", "raws", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.keys: list[str] = []
        self.raws: list[bytes] = []
        self.offsets: list[int] = []
