"""Event-time window aggregates per customer, kept as hop-sized buckets.

Why not Faust's windowed tables
-------------------------------
Faust's ``Table.tumbling()/hopping()`` return only the latest hopping window for a key,
have no grace period for late events, and leave expired windows in RocksDB. Instead the
worker keeps one plain (changelog-backed) table ``customer_id -> encode_state(state)`` and
this module does the windowing: the state is a dict of *buckets* of ``hop_s`` seconds,
``{bucket_start: [count, sum, max, {merchants}, {countries}]}``, plus the latest event
time and the all-time count and sum of the customer. Any window whose bounds are
multiples of ``hop_s`` is a merge of buckets, so one state serves both windows:

* short: the tumbling window containing ``ts``: ``[floor(ts/short)*short, +short)``;
* long: the hopping window ending at the next hop boundary:
  ``[floor(ts/hop)*hop + hop - long, floor(ts/hop)*hop + hop)``.

:func:`snapshot` reads the aggregates *as they stand before* an event (so an event never
sees itself: no label leakage), :func:`update` then adds it.

Robust to outliers: no single event can erase other events' windows. Buckets are pruned
when a new one is created, below ``min(ts, latest_ts) - long_s - hop_s``: an event far
ahead of the customer's history prunes nothing that its predecessors still need, and the
next ordinary event prunes relative to itself. Memory per customer stays bounded by about
``2 * long_s / hop_s`` buckets. Each bucket also keeps its latest event time, so
``seconds_since_prev`` is the gap to the latest *earlier* event, not to an outlier ahead.

Exactly-once per ``txn_id``: each bucket keeps the ids of its transactions, and
:func:`admit` (called by :func:`app.features.vectorize.join_transaction` before anything
changes) rejects a transaction whose id the customer's retained buckets already hold, and
one older than what was pruned (``horizon``): its id could no longer be checked. Both
raise :class:`InvalidRecord` and go to the dead-letter topic.

A bucket holds the states of :data:`app.features.aggregators.AGGREGATORS` (Quix Streams
style ``initialize``/``agg``/``result``, plus ``merge`` to combine buckets).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from app.features.aggregators import AGGREGATORS, Aggregator, Count, Distinct, Max, Sum
from app.features.errors import InvalidRecord
from app.features.records import Transaction

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "Count",
    "CustomerWindows",
    "Distinct",
    "Max",
    "Sum",
    "WindowConfig",
    "WindowFeatures",
    "activity_summary",
    "admit",
    "prune_buckets",
    "snapshot",
    "union_of",
    "update",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Window sizes in seconds; ``short_s`` and ``long_s`` must be multiples of ``hop_s``."""

    short_s: int = 3600
    long_s: int = 86400
    hop_s: int = 3600

    def __post_init__(self) -> None:
        for name in ("short_s", "long_s", "hop_s"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"WindowConfig.{name} must be a positive int, got {value!r}")
        if self.short_s % self.hop_s or self.long_s % self.hop_s:
            raise ValueError(
                f"short_s ({self.short_s}) and long_s ({self.long_s}) must be multiples "
                f"of hop_s ({self.hop_s})"
            )
        if self.short_s > self.long_s:
            raise ValueError(f"short_s ({self.short_s}) must be <= long_s ({self.long_s})")


_COUNT, _SUM, _MAX, _MERCHANTS, _COUNTRIES = AGGREGATORS
_NO_VALUES: frozenset[str] = frozenset()


@dataclass(slots=True)
class CustomerWindows:
    """Mutable window state of one customer (see the module docstring)."""

    buckets: dict[int, list[Any]] = field(default_factory=dict)
    """``start -> [count, sum, max, {merchants}, {countries}, latest ts, {txn ids}]``."""
    last_ts: float | None = None
    count: int = 0
    total: float = 0.0
    horizon: int | None = None
    """Buckets starting before this were pruned; transactions there are refused."""


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """Aggregates of a customer's windows just before one transaction."""

    short_count: int
    short_sum: float
    short_mean: float
    short_max: float
    short_distinct_merchants: int
    short_distinct_countries: int
    long_count: int
    long_sum: float
    long_mean: float
    long_max: float
    long_distinct_merchants: int
    long_distinct_countries: int
    seconds_since_prev: float | None
    customer_mean: float | None
    seen_merchant: bool
    seen_country: bool


def _fresh() -> list[Any]:
    return [a.initialize() for a in AGGREGATORS]


_LAST, _IDS = len(AGGREGATORS), len(AGGREGATORS) + 1  # bucket slots after the aggregators


def _merge(acc: list[Any], bucket: list[Any]) -> None:
    acc[0] = _COUNT.merge(acc[0], bucket[0])
    acc[1] = _SUM.merge(acc[1], bucket[1])
    acc[2] = _MAX.merge(acc[2], bucket[2])
    acc[3] = _MERCHANTS.merge(acc[3], bucket[3])
    acc[4] = _COUNTRIES.merge(acc[4], bucket[4])


def _results(acc: list[Any]) -> tuple[int, float, float, float, int, int]:
    count = _COUNT.result(acc[0])
    total = _SUM.result(acc[1])
    mean = total / count if count else 0.0
    return (
        count,
        total,
        mean,
        _MAX.result(acc[2]),
        _MERCHANTS.result(acc[3]),
        _COUNTRIES.result(acc[4]),
    )


def snapshot(
    state: CustomerWindows,
    ts: float,
    config: WindowConfig,
    *,
    merchant: str | None = None,
    country: str | None = None,
) -> WindowFeatures:
    """Aggregates of the windows of an event at ``ts``, *before* the event is added.

    Parameters
    ----------
    state : CustomerWindows
        The customer's state (not modified).
    ts : float
        Event time of the transaction.
    config : WindowConfig
        Window sizes.
    merchant, country : str or None
        The transaction's merchant category and country, for ``seen_merchant`` and
        ``seen_country`` (False when None).
    """
    hop = config.hop_s
    hi = (ts // hop) * hop + hop
    lo = hi - config.long_s
    s_lo = (ts // config.short_s) * config.short_s
    s_hi = s_lo + config.short_s
    # The aggregators' merge, inlined: this runs for every transaction.
    lc = sc = 0
    ls = lx = ss = sx = 0.0
    l_m: list[set[str]] = []
    l_c: list[set[str]] = []
    s_m: list[set[str]] = []
    s_c: list[set[str]] = []
    prev: float | None = None  # latest event time <= ts
    inside = False  # an event later than ts in ts's own bucket: the gap is unknown, 0
    for start, b in state.buckets.items():
        last = b[_LAST]
        if last <= ts:
            if prev is None or last > prev:
                prev = last
        elif start <= ts:
            inside = True
        if lo <= start < hi:
            lc += b[0]
            ls += b[1]
            if b[2] > lx:
                lx = b[2]
            l_m.append(b[3])
            l_c.append(b[4])
        if s_lo <= start < s_hi:
            sc += b[0]
            ss += b[1]
            if b[2] > sx:
                sx = b[2]
            s_m.append(b[3])
            s_c.append(b[4])
    long_merchants = union_of(l_m)
    long_countries = union_of(l_c)
    if inside or (prev is None and state.buckets):
        gap: float | None = 0.0
    else:
        gap = None if prev is None else ts - prev
    return WindowFeatures(
        sc,
        ss,
        ss / sc if sc else 0.0,
        sx,
        len(union_of(s_m)),
        len(union_of(s_c)),
        lc,
        ls,
        ls / lc if lc else 0.0,
        lx,
        len(long_merchants),
        len(long_countries),
        gap,
        state.total / state.count if state.count else None,
        merchant is not None and merchant in long_merchants,
        country is not None and country in long_countries,
    )


def union_of(sets: Sequence[AbstractSet[Any]]) -> AbstractSet[Any]:
    """The union of ``sets``, without a copy when there is only one."""
    if len(sets) == 1:
        return sets[0]
    if not sets:
        return _NO_VALUES
    return set().union(*sets)


def admit(state: CustomerWindows, txn: Transaction, config: WindowConfig) -> None:
    """Refuse a transaction that would count twice; raises :class:`InvalidRecord`.

    A ``txn_id`` already in the customer's retained buckets is a repeat; a transaction
    older than the pruned ``horizon`` could be one without anybody knowing.
    """
    start = int(txn.ts // config.hop_s) * config.hop_s
    horizon = state.horizon
    if horizon is not None and start < horizon:
        raise InvalidRecord(
            f"late event: ts {txn.ts:.0f} is before the retained history of customer "
            f"{txn.customer_id!r} (from {horizon}); a repeat of an older txn_id could not be told"
        )
    txn_id = txn.txn_id
    for bucket in state.buckets.values():
        if txn_id in bucket[_IDS]:
            raise InvalidRecord(
                f"repeated txn_id {txn_id!r} of customer {txn.customer_id!r}: already counted"
            )


def update(state: CustomerWindows, txn: Transaction, config: WindowConfig) -> CustomerWindows:
    """Add ``txn`` to ``state`` **in place** and return it; prunes expired buckets.

    Call :func:`admit` first (``join_transaction`` does): ``update`` itself never refuses.
    """
    hop = config.hop_s
    ts = txn.ts
    start = int(ts // hop) * hop
    bucket = state.buckets.get(start)
    previous_last = state.last_ts
    if bucket is None:
        bucket = state.buckets[start] = [*_fresh(), ts, set()]
        created = True
    else:
        created = False
    bucket[0] = _COUNT.agg(bucket[0], txn, ts)
    bucket[1] = _SUM.agg(bucket[1], txn, ts)
    bucket[2] = _MAX.agg(bucket[2], txn, ts)
    bucket[3] = _MERCHANTS.agg(bucket[3], txn, ts)
    bucket[4] = _COUNTRIES.agg(bucket[4], txn, ts)
    if ts > bucket[_LAST]:
        bucket[_LAST] = ts
    bucket[_IDS].add(txn.txn_id)
    state.count += 1
    state.total += txn.amount
    if previous_last is None or ts > previous_last:
        state.last_ts = ts
    if created:
        state.horizon = prune_buckets(
            state.buckets, state.horizon, ts, previous_last, config.long_s, hop
        )
    return state


def prune_buckets(
    buckets: dict[int, Any],
    horizon: int | None,
    ts: float,
    previous_last: float | None,
    span: int,
    grain: int,
) -> int | None:
    """Drop the buckets no window of ``span`` seconds can still reach; the new horizon.

    Pruning is relative to the older of this event and the key's latest: an outlier ahead
    of the history prunes nothing its predecessors still need. Buckets before the returned
    horizon are gone (events there are "late").
    """
    ref = ts if previous_last is None else min(ts, previous_last)
    cutoff = ref - span - grain
    old = [b for b in buckets if b < cutoff]
    for b in old:
        del buckets[b]
    if not old:
        return horizon
    top = max(old) + grain
    return top if horizon is None else max(horizon, top)


def _window_dict(acc: list[Any]) -> dict[str, Any]:
    count, total, mean, largest, n_merchants, n_countries = _results(acc)
    return {
        "count": count,
        "sum": total,
        "mean": mean,
        "max": largest,
        "distinct_merchants": n_merchants,
        "distinct_countries": n_countries,
        "merchants": sorted(acc[3]),
        "countries": sorted(acc[4]),
    }


def activity_summary(state: CustomerWindows, now_ts: float, config: WindowConfig) -> dict[str, Any]:
    """JSON-ready activity of a customer as of ``now_ts`` (for the chatbot).

    ``short`` and ``long`` are the trailing windows of ``short_s`` and ``long_s``
    seconds ending at the next hop boundary after ``now_ts`` (bucket granularity).
    """
    hop = config.hop_s
    hi = (now_ts // hop) * hop + hop
    short_acc = _fresh()
    long_acc = _fresh()
    for start, bucket in state.buckets.items():
        if hi - config.long_s <= start < hi:
            _merge(long_acc, bucket)
            if hi - config.short_s <= start:
                _merge(short_acc, bucket)
    last = state.last_ts
    return {
        "as_of": now_ts,
        "short_s": config.short_s,
        "long_s": config.long_s,
        "short": _window_dict(short_acc),
        "long": _window_dict(long_acc),
        "last_ts": last,
        "seconds_since_last": None if last is None else max(0.0, now_ts - last),
        "lifetime_count": state.count,
        "lifetime_mean": state.total / state.count if state.count else None,
    }
