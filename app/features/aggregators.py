"""Window aggregators in Quix Streams' style: ``initialize``, ``agg``, ``result``.

Each aggregator folds transactions into a small state; ``merge`` combines two states,
which is how :mod:`app.features.windows` builds a window out of hop-sized buckets.
"""

from __future__ import annotations

import logging
from typing import Protocol, TypeVar

from app.features.records import Transaction

__all__ = ["AGGREGATORS", "Aggregator", "Count", "Distinct", "Max", "Sum"]

logger = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R", covariant=True)


class Aggregator(Protocol[S, R]):
    """One window aggregate over transactions."""

    def initialize(self) -> S: ...
    def agg(self, state: S, value: Transaction, ts: float) -> S: ...
    def merge(self, state: S, other: S) -> S: ...
    def result(self, state: S) -> R: ...


class Count:
    """Number of transactions."""

    __slots__ = ()

    def initialize(self) -> int:
        return 0

    def agg(self, state: int, value: Transaction, ts: float) -> int:
        return state + 1

    def merge(self, state: int, other: int) -> int:
        return state + other

    def result(self, state: int) -> int:
        return state


class Sum:
    """Sum of ``amount``."""

    __slots__ = ()

    def initialize(self) -> float:
        return 0.0

    def agg(self, state: float, value: Transaction, ts: float) -> float:
        return state + value.amount

    def merge(self, state: float, other: float) -> float:
        return state + other

    def result(self, state: float) -> float:
        return state


class Max:
    """Largest ``amount`` (0.0 for an empty window; amounts are validated >= 0)."""

    __slots__ = ()

    def initialize(self) -> float:
        return 0.0

    def agg(self, state: float, value: Transaction, ts: float) -> float:
        return value.amount if value.amount > state else state

    def merge(self, state: float, other: float) -> float:
        return other if other > state else state

    def result(self, state: float) -> float:
        return state


class Distinct:
    """Number of distinct values of one string field (``merchant_category``, ``country``).

    The state is a set, mutated in place by ``agg`` and ``merge`` (``initialize`` always
    returns a fresh one).
    """

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def initialize(self) -> set[str]:
        return set()

    def agg(self, state: set[str], value: Transaction, ts: float) -> set[str]:
        state.add(getattr(value, self.field))
        return state

    def merge(self, state: set[str], other: set[str]) -> set[str]:
        state |= other
        return state

    def result(self, state: set[str]) -> int:
        return len(state)


AGGREGATORS: tuple[Count, Sum, Max, Distinct, Distinct] = (
    Count(),
    Sum(),
    Max(),
    Distinct("merchant_category"),
    Distinct("country"),
)
"""The aggregators of a bucket, in bucket-list order."""
