"""Versioned customer profiles and the as-of (event-time) lookup of the join.

A transaction joins the profile that was valid at its event time: the latest version with
``ts <= txn.ts`` (ties: the version read last wins), not whichever version happens to be
the newest when the worker gets to the transaction. So the order in which the two topics
are consumed (a backlog read all at once, a catch-up after a broker outage, a restart)
does not change a row, as long as the versions a transaction needs have been read before
it is joined (the worker's join gate, ``app.stream.join_gate``, holds transactions until
then).

History is bounded per customer, like a versioned table (Kafka Streams' KIP-889):

* at most ``max_versions`` versions (the oldest go first);
* a version is dropped once a newer one is older than the newest by more than
  ``max_age_s`` (so lookups within ``max_age_s`` of the customer's newest version are
  exact).

A transaction older than every kept version of its customer finds no profile and is
joined as "profile missing" (the default profile, see :mod:`app.features.vectorize`).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from app.features.records import Customer
from app.features.validation import parse_customer

__all__ = ["HistoryBounds", "ProfileHistory", "Versioned", "decode_history", "encode_history"]

logger = logging.getLogger(__name__)

_HISTORY_VERSION = 1


class Versioned(Protocol):
    """Anything with an event time: a Customer, or a row of a pipeline's table."""

    @property
    def ts(self) -> float: ...


V = TypeVar("V", bound=Versioned)


def _ts(version: Versioned) -> float:
    return version.ts


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """How much profile history to keep per customer (see the module docs)."""

    max_versions: int = 16
    max_age_s: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if self.max_versions < 1:
            raise ValueError(f"max_versions must be >= 1, got {self.max_versions}")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")


@dataclass(slots=True)
class ProfileHistory(Generic[V]):
    """The kept versions of one customer's profile, sorted by event time.

    Versions with equal ``ts`` stay in the order they were added.
    """

    versions: list[V] = field(default_factory=list)

    def add(self, profile: V, bounds: HistoryBounds) -> None:
        """Insert ``profile`` by event time, then trim to ``bounds``."""
        versions = self.versions
        if not versions or versions[-1].ts <= profile.ts:
            versions.append(profile)
        else:  # out of order: a late version still serves transactions read after it
            versions.insert(bisect_right(versions, profile.ts, key=_ts), profile)
        if len(versions) > bounds.max_versions:
            del versions[: len(versions) - bounds.max_versions]
        horizon = versions[-1].ts - bounds.max_age_s
        drop = 0
        while drop + 1 < len(versions) and versions[drop + 1].ts <= horizon:
            drop += 1
        if drop:
            del versions[:drop]

    def as_of(self, ts: float) -> V | None:
        """The latest version with ``ts`` at or before ``ts``; None if there is none."""
        versions = self.versions
        if versions and versions[-1].ts <= ts:  # the common case: the newest applies
            return versions[-1]
        i = bisect_right(versions, ts, key=_ts)
        return versions[i - 1] if i else None

    def latest(self) -> V | None:
        """The version with the largest event time (what the chatbot shows)."""
        return self.versions[-1] if self.versions else None


def encode_history(history: ProfileHistory[Customer]) -> bytes:
    """Deterministic JSON for a table value: ``[version, [profile dict, ...]]``."""
    return orjson.dumps([_HISTORY_VERSION, [v.to_dict() for v in history.versions]])


def _customer(obj: dict[str, Any]) -> Customer:
    return Customer(**obj)  # written by encode_history: the fields of Customer.to_dict()


def decode_history(data: bytes | bytearray | memoryview | None) -> ProfileHistory[Customer]:
    """Inverse of :func:`encode_history`; None or empty gives an empty history.

    A single profile JSON object (the table format before versioning) is read as a
    history of one version.

    Raises
    ------
    ValueError
        If ``data`` is neither.
    """
    if not data:
        return ProfileHistory()
    raw = bytes(data)
    try:
        if raw.lstrip().startswith(b"{"):
            return ProfileHistory([parse_customer(raw)])
        version, items = orjson.loads(raw)
        if version != _HISTORY_VERSION:
            raise ValueError(f"unsupported profile history version {version!r}")
        return ProfileHistory([_customer(dict(item)) for item in items])
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt profile history: {exc}") from None
