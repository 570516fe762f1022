"""Event-time windows and their aggregations for the pipeline API (pure code).

A window operator keeps, per key, *buckets* of ``grain`` seconds (the greatest common
divisor of every window size and step), each holding the states of the aggregations.
A window is a merge of buckets, as in :mod:`app.features.windows` (whose two windows the
built-in fraud pipeline reproduces exactly):

* :func:`tumbling`: the window containing ``ts``: ``[floor(ts/size)*size, +size)``;
* :func:`hopping`: the window ending at the next step boundary:
  ``[floor(ts/every)*every + every - size, floor(ts/every)*every + every)``;
* :func:`alltime`: every earlier event of the key.

A row reads the aggregates *before* its own event is added (no label leakage). Pruning,
``since_prev`` and ``unique`` follow :mod:`app.features.windows` exactly (see
:class:`WindowPlan`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from app.features.windows import prune_buckets, union_of

__all__ = [
    "Agg",
    "KeyWindows",
    "Window",
    "WindowPlan",
    "alltime",
    "count",
    "distinct",
    "hopping",
    "max_",
    "mean",
    "parse_duration",
    "seen",
    "since_prev",
    "sum_",
    "tumbling",
]

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: str | int) -> int:
    """Seconds of ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` or an int of seconds.

    Raises
    ------
    ValueError
        For anything else, or a duration that is not positive.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"duration {value!r}: use e.g. '30s', '15m', '1h', '7d' or seconds")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


@dataclass(frozen=True, slots=True)
class Window:
    """One window shape: ``kind`` tumbling, hopping or alltime."""

    kind: str
    size_s: int = 0
    every_s: int = 0

    def bounds(self, ts: float) -> tuple[float, float]:
        """``[lo, hi)`` of bucket starts in the window of an event at ``ts``."""
        if self.kind == "tumbling":
            lo = (ts // self.size_s) * self.size_s
            return lo, lo + self.size_s
        if self.kind == "hopping":
            hi = (ts // self.every_s) * self.every_s + self.every_s
            return hi - self.size_s, hi
        return -math.inf, math.inf

    def sizes(self) -> list[int]:
        """The sizes that go into the spec version (none for alltime)."""
        if self.kind == "tumbling":
            return [self.size_s]
        if self.kind == "hopping":
            return [self.size_s, self.every_s]
        return []


def tumbling(size: str | int) -> Window:
    """Non-overlapping windows of ``size`` (e.g. ``"1h"``)."""
    return Window("tumbling", parse_duration(size))


def hopping(size: str | int, every: str | int) -> Window:
    """Windows of ``size`` that move by ``every`` (``size`` a multiple of ``every``)."""
    size_s, every_s = parse_duration(size), parse_duration(every)
    if size_s % every_s:
        raise ValueError(f"hopping window: size {size!r} must be a multiple of every {every!r}")
    return Window("hopping", size_s, every_s)


def alltime() -> Window:
    """Every earlier event of the key (e.g. a customer's all-time mean amount)."""
    return Window("alltime")


@dataclass(frozen=True, slots=True)
class Agg:
    """One aggregation: ``how`` over column ``on``; output column ``<window>_<name>``."""

    how: str
    on: str | None = None

    @property
    def name(self) -> str:
        return self.how if self.on is None else f"{self.how}_{self.on}"


def count() -> Agg:
    """Number of earlier events in the window."""
    return Agg("count")


def sum_(on: str) -> Agg:
    """Sum of a numeric column (0.0 for an empty window)."""
    return Agg("sum", on)


def max_(on: str) -> Agg:
    """Largest value of a numeric column (0.0 for an empty window)."""
    return Agg("max", on)


def mean(on: str) -> Agg:
    """Mean of a numeric column (NaN for an empty window)."""
    return Agg("mean", on)


def distinct(on: str) -> Agg:
    """Number of distinct values of a column."""
    return Agg("distinct", on)


def seen(on: str) -> Agg:
    """1.0 if the event's own value of ``on`` already occurred in the window, else 0.0."""
    return Agg("seen", on)


def since_prev() -> Agg:
    """Seconds since the key's latest earlier event in the retained history (NaN: none)."""
    return Agg("since_prev")


class KeyWindows:
    """The bucket state of one key.

    ``buckets``: ``{start: [count, sums..., maxes..., sets..., latest ts, ids]}`` (ids: a
    set of the ``unique`` column's values, else None); ``last_ts``, ``n`` and ``sums``: the
    key's all-time latest time, count and sums (in the order of
    :meth:`WindowPlan.inputs`); ``horizon``: buckets before it were pruned.
    """

    __slots__ = ("buckets", "horizon", "last_ts", "n", "sums")

    def __init__(self) -> None:
        self.buckets: dict[int, list[Any]] = {}
        self.last_ts: float | None = None
        self.n = 0
        self.sums: list[float] = []
        self.horizon: int | None = None


_KINDS = {"count": 0, "sum": 1, "mean": 2, "max": 3, "distinct": 4, "seen": 5, "since_prev": 6}
_ALLTIME_KINDS = ("count", "sum", "mean", "since_prev")


class WindowPlan:
    """Compiled window step: named windows x aggregations -> output columns in order.

    Parameters
    ----------
    windows : sequence of (name, Window)
        In output order.
    aggs : sequence of Agg
        Applied to every window; an alltime window emits only count, sum, mean and
        since_prev (the others need buckets it does not keep).
    unique : str or None
        A column whose value an event of a key may have only once (e.g. ``txn_id``): a
        repeat, or an event older than the pruned history, is refused (dead letter).
    key_name : str
        How refusal messages name the key (``customer`` for ``customer_id``).
    """

    def __init__(self, windows: list[tuple[str, Window]], aggs: list[Agg],
                 unique: str | None = None, key_name: str = "key") -> None:  # fmt: skip
        if not windows or not aggs:
            raise ValueError("window() needs at least one window and one aggregation")
        self.windows = windows
        self.aggs = aggs
        self.unique = unique
        self.key_name = key_name
        sized = [s for _, w in windows for s in w.sizes()]
        self.grain = math.gcd(*sized) if sized else 1
        self.longest = max(sized) if sized else 0
        self.sum_cols = sorted({a.on for a in aggs if a.how in ("sum", "mean") and a.on})
        self.max_cols = sorted({a.on for a in aggs if a.how == "max" and a.on})
        self.set_cols = sorted({a.on for a in aggs if a.how in ("distinct", "seen") and a.on})
        s_n, m_n, d_n = len(self.sum_cols), len(self.max_cols), len(self.set_cols)
        self._d0 = 1 + s_n + m_n
        self._last = self._d0 + d_n  # bucket slot of the latest event time, then ids
        self.columns: list[str] = []
        self._outputs: list[list[tuple[int, int]]] = []  # per window: (kind, bucket slot)
        for name, w in windows:
            outs = []
            for a in aggs:
                if w.kind == "alltime" and a.how not in _ALLTIME_KINDS:
                    continue
                if a.how in ("sum", "mean"):
                    j = 1 + self.sum_cols.index(a.on or "")
                elif a.how == "max":
                    j = 1 + s_n + self.max_cols.index(a.on or "")
                elif a.how in ("distinct", "seen"):
                    j = self._d0 + self.set_cols.index(a.on or "")
                else:
                    j = 0
                outs.append((_KINDS[a.how], j))
                self.columns.append(f"{name}_{a.name}")
            self._outputs.append(outs)

    def inputs(self) -> list[str]:
        """Columns the step reads besides the time, in bucket order (sums, maxes, sets)."""
        return [*self.sum_cols, *self.max_cols, *self.set_cols]

    def admit(self, state: KeyWindows, ts: float, uid: Any, key: str) -> str | None:
        """Why the event must be refused (see ``unique``), or None to accept it."""
        if self.unique is None or not self.longest:
            return None
        start = int(ts // self.grain) * self.grain
        horizon = state.horizon
        if horizon is not None and start < horizon:
            return (f"late event: ts {ts:.0f} is before the retained history of "
                    f"{self.key_name} {key!r} (from {horizon}); a repeat of an older "
                    f"{self.unique} could not be told")  # fmt: skip
        ids = self._last + 1
        for bucket in state.buckets.values():
            if uid in bucket[ids]:
                return f"repeated {self.unique} {uid!r} of {self.key_name} {key!r}: already counted"
        return None

    def _gap(self, state: KeyWindows, ts: float) -> float:
        """Seconds since the latest earlier event in the retained history (NaN: none).

        An event later than ``ts`` in ``ts``'s own bucket makes the gap unknown: 0.
        """
        if not self.longest:
            last = state.last_ts
            return math.nan if last is None else max(0.0, ts - last)
        prev: float | None = None
        inside = False
        slot = self._last
        for start, b in state.buckets.items():
            last = b[slot]
            if last <= ts:
                if prev is None or last > prev:
                    prev = last
            elif start <= ts:
                inside = True
        if inside or (prev is None and state.buckets):
            return 0.0
        return math.nan if prev is None else ts - prev

    def snapshot(self, state: KeyWindows, ts: float, row: list[Any]) -> list[float]:
        """Every output of one event, from the state *before* the event.

        ``row`` holds the event's values of :meth:`inputs`, in that order.
        """
        d0, width = self._d0, self._last
        s_n = len(self.sum_cols)
        sized = [(i, w.bounds(ts)) for i, (_n, w) in enumerate(self.windows) if w.kind != "alltime"]
        accs: dict[int, list[Any]] = {
            i: [0, *([0.0] * (d0 - 1)), *([] for _ in self.set_cols)] for i, _ in sized
        }
        for start, b in state.buckets.items() if sized else ():
            for i, (lo, hi) in sized:
                if lo <= start < hi:
                    acc = accs[i]
                    acc[0] += b[0]
                    for j in range(1, 1 + s_n):
                        acc[j] += b[j]
                    for j in range(1 + s_n, d0):
                        if b[j] > acc[j]:
                            acc[j] = b[j]
                    for j in range(d0, width):
                        acc[j].append(b[j])
        gap: float | None = None
        out: list[float] = []
        for i, (_name, w) in enumerate(self.windows):
            outs = self._outputs[i]
            if w.kind == "alltime":
                n = state.n
                for how, j in outs:
                    if how == 0:
                        out.append(float(n))
                    elif how == 1:
                        out.append(state.sums[j - 1] if n else 0.0)
                    elif how == 2:
                        out.append(state.sums[j - 1] / n if n else math.nan)
                    else:
                        gap = self._gap(state, ts) if gap is None else gap
                        out.append(gap)
                continue
            acc = accs[i]
            n = acc[0]
            unions = [union_of(acc[j]) for j in range(d0, width)]
            for how, j in outs:
                if how == 0:  # count
                    out.append(float(n))
                elif how in (1, 3):  # sum, max
                    out.append(acc[j])
                elif how == 2:  # mean
                    out.append(acc[j] / n if n else math.nan)
                elif how == 4:  # distinct
                    out.append(float(len(unions[j - d0])))
                elif how == 5:  # seen: the event's own value among the window's values
                    out.append(1.0 if row[j - 1] in unions[j - d0] else 0.0)
                else:
                    gap = self._gap(state, ts) if gap is None else gap
                    out.append(gap)
        return out

    def update(self, state: KeyWindows, ts: float, row: list[Any], uid: Any = None) -> None:
        """Add one event (values of :meth:`inputs`) to ``state`` in place; prunes.

        Buckets are pruned when a new one is created, below ``min(ts, latest) - longest
        window - grain``: an event far ahead of the key's history prunes nothing its
        predecessors still need.
        """
        s_n = len(self.sum_cols)
        if not state.sums:
            state.sums = [0.0] * s_n
        for j in range(s_n):
            state.sums[j] += row[j]
        state.n += 1
        previous_last = state.last_ts
        if previous_last is None or ts > previous_last:
            state.last_ts = ts
        if not self.longest:  # alltime windows only: no buckets
            return
        grain, d0, slot = self.grain, self._d0, self._last
        start = int(ts // grain) * grain
        bucket = state.buckets.get(start)
        created = bucket is None
        if bucket is None:
            bucket = state.buckets[start] = [
                0, *([0.0] * (d0 - 1)), *(set() for _ in self.set_cols), ts,
                set() if self.unique is not None else None,
            ]  # fmt: skip
        bucket[0] += 1
        for j in range(1, 1 + s_n):
            bucket[j] += row[j - 1]
        for j in range(1 + s_n, d0):
            if row[j - 1] > bucket[j]:
                bucket[j] = row[j - 1]
        for j in range(d0, slot):
            bucket[j].add(row[j - 1])
        if ts > bucket[slot]:
            bucket[slot] = ts
        if self.unique is not None:
            bucket[slot + 1].add(uid)
        if created:
            state.horizon = prune_buckets(
                state.buckets, state.horizon, ts, previous_last, self.longest, grain
            )
