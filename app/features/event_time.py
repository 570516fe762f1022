"""Event times: the contract bound, the plausibility policy and a robust stream clock.

Three layers, from fixed to configurable:

* :data:`MAX_EVENT_TS` is part of the payload contract (``topics/schemas``): a ``ts`` above
  it is not seconds since the epoch. It keeps every derived integer (window bucket starts)
  far inside 64 bits, so no accepted record can break the state encoding at commit time.
* :class:`TimePolicy` rejects event times that are valid seconds but implausible against
  the worker's clock: more than ``max_ahead_s`` in the future (default 1 h, like Kafka's
  ``log.message.timestamp.after.max.ms``) or more than ``max_back_s`` in the past (default
  30 years: replays of real 2005 data pass, ``ts = 0`` does not). The reason names the
  likely mistake ("looks like milliseconds").
* :class:`StreamClock` is the stream time the chatbot answers "as of": the K-th largest
  latest event time over distinct customers, so no single customer's events can move it
  (one outlier moves it at most to another customer's honest latest time).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from app.features.errors import InvalidRecord

__all__ = [
    "DEFAULT_MAX_AHEAD_S",
    "DEFAULT_MAX_BACK_S",
    "MAX_EVENT_TS",
    "StreamClock",
    "TimePolicy",
    "unit_hint",
]

logger = logging.getLogger(__name__)

MAX_EVENT_TS = 1e11
"""Largest ``ts`` of the contract (year 5138): anything above is not epoch seconds."""
DEFAULT_MAX_AHEAD_S = 3600.0
DEFAULT_MAX_BACK_S = 30 * 365.25 * 86400.0

_YEAR_S = 365.25 * 86400.0
_UNITS = ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds"))


def unit_hint(ts: float, now_s: float | None = None) -> str:
    """``"; looks like milliseconds"`` etc. when ``ts`` scaled down is a plausible time.

    Plausible = between 1990 and 100 years after ``now_s`` (the wall clock when None).
    Returns ``""`` when no unit fits.
    """
    now = time.time() if now_s is None else now_s
    for factor, unit in _UNITS:
        if 631_152_000.0 <= ts / factor <= now + 100 * _YEAR_S:
            return f"; looks like {unit}"
    return ""


def _span(seconds: float) -> str:
    if seconds >= 2 * _YEAR_S:
        return f"{seconds / _YEAR_S:.0f} years"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds:.0f} s"


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """How far from the worker's clock an event time may be (seconds)."""

    max_ahead_s: float = DEFAULT_MAX_AHEAD_S
    max_back_s: float = DEFAULT_MAX_BACK_S

    def __post_init__(self) -> None:
        for name in ("max_ahead_s", "max_back_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TimePolicy.{name} must be >= 0")

    def check(self, ts: float, now_s: float, field: str = "ts") -> float:
        """Return ``ts`` if plausible at worker time ``now_s``, else raise InvalidRecord."""
        ahead = ts - now_s
        if ahead > self.max_ahead_s:
            hint = unit_hint(ts, now_s) or (
                "; a local time sent as UTC?" if ahead <= 14 * 3600 else "; a wrong clock?"
            )
            raise InvalidRecord(
                f"field {field!r}: event time {ts:.0f} is {_span(ahead)} ahead of the worker's "
                f"clock (max {_span(self.max_ahead_s)}){hint}"
            )
        if -ahead > self.max_back_s:
            hint = "; an unset timestamp (0 = 1970-01-01)?" if ts < 86400 else ""
            if not hint and ts < 1e7:
                hint = "; looks like a duration, not seconds since the epoch"
            raise InvalidRecord(
                f"field {field!r}: event time {ts:.0f} is {_span(-ahead)} before the worker's "
                f"clock (max {_span(self.max_back_s)}){hint}"
            )
        return ts


class StreamClock:
    """Stream time robust to outliers: the ``k``-th largest latest time of distinct keys.

    Keeps only the top ``k`` keys, so :meth:`observe` is O(k). Before ``k`` distinct keys
    were seen, :attr:`now` is None (callers fall back to something local).
    """

    __slots__ = ("_top", "k")

    def __init__(self, k: int = 3) -> None:
        if k < 1:
            raise ValueError("StreamClock.k must be >= 1")
        self.k = k
        self._top: dict[str, float] = {}

    def observe(self, key: str, ts: float) -> None:
        top = self._top
        old = top.get(key)
        if old is not None:
            if ts > old:
                top[key] = ts
            return
        if len(top) < self.k:
            top[key] = ts
            return
        low_key = min(top, key=top.__getitem__)
        if ts > top[low_key]:
            del top[low_key]
            top[key] = ts

    @property
    def now(self) -> float | None:
        top = self._top
        return min(top.values()) if len(top) >= self.k else None
