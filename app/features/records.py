"""Event records (frozen ``__slots__`` dataclasses) for the input topics.

The JSON contracts live in ``topics/schemas``; :mod:`app.features.validation` turns raw
bytes into these records. ``to_dict()`` is the inverse, for producers: ``orjson.dumps``
of it parses back into an equal record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["EMPTY_ATTRS", "ChatRequest", "Customer", "Transaction"]

logger = logging.getLogger(__name__)

EMPTY_ATTRS: Mapping[str, float] = MappingProxyType({})
"""Shared immutable empty ``attrs`` mapping (the default of both records)."""


def _empty_attrs() -> Mapping[str, float]:
    return EMPTY_ATTRS


@dataclass(frozen=True, slots=True)
class Customer:
    """Latest profile of one customer (``bank.customers``, key = ``customer_id``).

    Attributes
    ----------
    customer_id : str
        1..64 characters.
    silo : int
        Home silo (region or member bank) of the customer.
    ts : float
        Event time, seconds since the epoch (UTC).
    age, income_band, credit_limit, segment, tenure_months, home_country
        Profile fields with the schema defaults.
    attrs : Mapping[str, float]
        Extra numeric attributes (at most 64) that may become ``profile.<name>`` features.
    """

    customer_id: str
    silo: int
    ts: float
    age: int = 40
    income_band: int = 2
    credit_limit: float = 5000.0
    segment: str = "retail"
    tenure_months: int = 0
    home_country: str = "XX"
    attrs: Mapping[str, float] = field(default_factory=_empty_attrs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict matching ``customer.schema.json`` (``attrs`` omitted if empty)."""
        out: dict[str, Any] = {
            "customer_id": self.customer_id,
            "silo": self.silo,
            "ts": self.ts,
            "age": self.age,
            "income_band": self.income_band,
            "credit_limit": self.credit_limit,
            "segment": self.segment,
            "tenure_months": self.tenure_months,
            "home_country": self.home_country,
        }
        if self.attrs:
            out["attrs"] = dict(self.attrs)
        return out


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card or account transaction (``bank.transactions``, key = ``customer_id``).

    Attributes
    ----------
    txn_id, customer_id : str
        1..64 characters each.
    ts : float
        Event time, seconds since the epoch (UTC).
    amount : float
        0 .. 1e9.
    merchant_category, channel, country
        Categorical fields with the schema defaults.
    silo : int or None
        Overrides the profile's home silo when set.
    label : int or None
        1 = fraud/default, 0 = genuine, None = unknown.
    attrs : Mapping[str, float]
        Extra numeric attributes that may become ``txn.<name>`` features.
    """

    txn_id: str
    customer_id: str
    ts: float
    amount: float
    merchant_category: str = "other"
    channel: str = "pos"
    country: str = "XX"
    silo: int | None = None
    label: int | None = None
    attrs: Mapping[str, float] = field(default_factory=_empty_attrs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict matching ``transaction.schema.json``.

        ``silo`` is omitted when None (the schema does not allow null there) and
        ``attrs`` when empty; ``label`` is always present (null = unknown).
        """
        out: dict[str, Any] = {
            "txn_id": self.txn_id,
            "customer_id": self.customer_id,
            "ts": self.ts,
            "amount": self.amount,
            "merchant_category": self.merchant_category,
            "channel": self.channel,
            "country": self.country,
            "label": self.label,
        }
        if self.silo is not None:
            out["silo"] = self.silo
        if self.attrs:
            out["attrs"] = dict(self.attrs)
        return out


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """An enrichment question about one customer (a tenant's ``chatbot.<tenant>.requests``).

    Attributes
    ----------
    request_id : str
        Correlates the answer on the tenant's ``chatbot.<tenant>.responses``.
    customer_id : str
        Customer the question is about (also the record key).
    question, intent : str or None
        Free text and/or a machine intent such as ``"risk"``.
    reply_topic : str or None
        None, or the tenant's own responses topic (any other is refused).
    sent_ts : float or None
        Client send time, seconds since the epoch.
    """

    request_id: str
    customer_id: str
    question: str | None = None
    intent: str | None = None
    reply_topic: str | None = None
    sent_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict matching ``chatbot_request.schema.json`` (None fields omitted)."""
        out: dict[str, Any] = {"request_id": self.request_id, "customer_id": self.customer_id}
        if self.question is not None:
            out["question"] = self.question
        if self.intent is not None:
            out["intent"] = self.intent
        if self.reply_topic is not None:
            out["reply_topic"] = self.reply_topic
        if self.sent_ts is not None:
            out["sent_ts"] = self.sent_ts
        return out
