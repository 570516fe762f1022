"""Hold a transaction until the profile versions up to its event time have been read.

The as-of join (:mod:`app.features.profiles`) gives the same row whatever order the two
topics are read in, provided the profile versions a transaction needs were read before it
is joined. The two topics are co-partitioned (same key, same partition count), so a
transaction of partition ``p`` needs the profiles of ``bank.customers`` partition ``p``.
A transaction with event time ``t`` is released as soon as one of these holds:

1. a profile with ``ts >= t`` has been read from that partition (its event-time
   watermark passed ``t``; profiles of one partition are assumed to come in event-time
   order, like Kafka Streams' stream time per partition);
2. that partition is read up to its end (the highwater of the last fetch) and the
   transaction has been on the broker for at least ``hold_s``: a producer that sent a
   profile update before the transaction may have it appended a little later (a
   producer's backlog after a broker outage is flushed partition by partition), and
   ``hold_s`` is how long the gate allows for that;
3. it has waited ``max_wait_s`` in the gate (the customers partition makes no progress):
   it is joined with what has been read, and :attr:`GateCounters.timeouts` counts it;
4. optionally (``interrupted``, off in the worker): the caller says delivery stopped.
   Releasing on Faust's suspended flow control made the broker-outage test join rows
   early (the restart rebalances), so the worker relies on rule 3 during a rebalance.

A profile update that arrives later than that is *late*: it is kept in the history and
serves every transaction joined after it was read, but rows already produced are not
revised (training rows are final).

When a transaction arrived is estimated from the transactions partition's highwater:
the first time the gate saw the highwater beyond the transaction's offset. That time is
never earlier than the real arrival, so the estimate can only make the hold longer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GateCounters", "JoinGate", "join_gate"]

logger = logging.getLogger(__name__)

POLL_S = 0.005
"""How often a held transaction looks again (reads happen in other agents)."""

Offsets = Callable[[int], "int | None"]
"""Partition number -> an offset of it (None = not known yet)."""


@dataclass(slots=True)
class GateCounters:
    held: int = 0
    """Transactions that had to wait."""
    timeouts: int = 0
    """Transactions released after ``max_wait_s`` (rule 3)."""
    interrupted: int = 0
    """Transactions released because delivery stopped (rule 4)."""


class JoinGate:
    """The release rules of the module docstring, per co-partition.

    Parameters
    ----------
    customers_end : callable
        Highwater (next offset) of a customers partition as of the last fetch; None if
        unknown yet.
    customers_start : callable
        Where reading of a customers partition started (its committed offset); used
        until the first profile of that partition has been read.
    transactions_end : callable
        Highwater of a transactions partition as of the last fetch.
    hold_s, max_wait_s : float
        See the module docstring.
    clock : callable
        Monotonic seconds (injected by tests).
    interrupted : callable
        True while the consumer delivers nothing (rule 4).
    """

    def __init__(
        self,
        customers_end: Offsets,
        customers_start: Offsets,
        transactions_end: Offsets,
        hold_s: float = 0.5,
        max_wait_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        if hold_s < 0 or max_wait_s < hold_s:
            raise ValueError(f"need 0 <= hold_s <= max_wait_s, got {hold_s}, {max_wait_s}")
        self._customers_end = customers_end
        self._customers_start = customers_start
        self._transactions_end = transactions_end
        self.hold_s = hold_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._interrupted = interrupted
        self._next: dict[int, int] = {}
        self._watermark: dict[int, float] = {}
        self._seen_end: dict[int, deque[tuple[float, int]]] = {}
        self.counters = GateCounters()

    def customer_read(self, partition: int, offset: int, ts: float | None) -> None:
        """A customers record was handled (``ts`` None: it was invalid)."""
        self._next[partition] = offset + 1
        if ts is not None and ts > self._watermark.get(partition, -math.inf):
            self._watermark[partition] = ts

    def caught_up(self, partition: int) -> bool:
        """Whether the customers partition is read up to its end as of the last fetch."""
        end = self._customers_end(partition)
        if end is None:
            return False
        done = self._next.get(partition)
        if done is None:
            done = self._customers_start(partition) or 0
        return done >= end

    def _arrived(self, partition: int, offset: int, now: float) -> float:
        """Earliest time the gate knew the transaction at ``offset`` was on the broker."""
        seen = self._seen_end.get(partition)
        if seen is None:
            seen = self._seen_end[partition] = deque()
        end = self._transactions_end(partition)
        if end is not None and (not seen or seen[-1][1] < end):
            seen.append((now, end))
        while seen and seen[0][1] <= offset:  # later offsets never need these
            seen.popleft()
        return seen[0][0] if seen else now

    def ready(self, partition: int, offset: int, ts: float) -> bool:
        """Whether the transaction (``offset``, event time ``ts``) may be joined now."""
        if self._watermark.get(partition, -math.inf) >= ts:
            return True
        now = self._clock()
        arrived = self._arrived(partition, offset, now)
        return now - arrived >= self.hold_s and self.caught_up(partition)

    async def wait(self, partition: int, offset: int, ts: float,
                   within_s: float | None = None) -> None:  # fmt: skip
        """Return once :meth:`ready` (or after ``within_s``, by default ``max_wait_s``,
        counted as a timeout)."""
        if self.ready(partition, offset, ts):
            return
        self.counters.held += 1
        start = self._clock()
        limit = self.max_wait_s if within_s is None else min(within_s, self.max_wait_s)
        while not self.ready(partition, offset, ts):
            if self._interrupted():
                self.counters.interrupted += 1
                logger.info("join gate: delivery stopped; partition %d offset %d joined with "
                            "the profiles read so far", partition, offset)  # fmt: skip
                return
            if self._clock() - start >= limit:
                self.counters.timeouts += 1
                logger.warning(
                    "join gate: transaction at partition %d offset %d joined after %.1f s "
                    "without the profiles up to its time (customers partition %s)",
                    partition, offset, self._clock() - start,
                    "not fetched yet" if self._customers_end(partition) is None else "behind",
                )  # fmt: skip
                return
            await asyncio.sleep(POLL_S)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: their reading restarts from the committed offsets."""
        for p in partitions:
            self._next.pop(p, None)
            self._watermark.pop(p, None)
            self._seen_end.pop(p, None)


def join_gate(app: Any, customers: str, transactions: str, hold_s: float,
              max_wait_s: float) -> JoinGate:  # fmt: skip
    """A JoinGate over a Faust app's fetch positions (``customers``: the table topic,
    ``transactions``: the stream topic; co-partitioned)."""
    from faust.types import TP  # the adapter's only Faust import

    tps: dict[tuple[str, int], Any] = {}

    def tp_of(topic: str, partition: int) -> Any:
        tp = tps.get((topic, partition))
        if tp is None:
            tp = tps[(topic, partition)] = TP(topic, partition)
        return tp

    def end(topic: str) -> Offsets:
        def highwater(partition: int) -> int | None:
            try:
                return app.consumer.highwater(tp_of(topic, partition))  # type: ignore[no-any-return]
            except AssertionError:  # not assigned here: nothing to wait for
                return 0

        return highwater

    def customers_start(partition: int) -> int | None:
        # Faust's committed offset of the partition, set when it was assigned (next offset)
        return app.consumer._committed_offset.get(tp_of(customers, partition))  # type: ignore[no-any-return]

    return JoinGate(end(customers), customers_start, end(transactions), hold_s, max_wait_s)
