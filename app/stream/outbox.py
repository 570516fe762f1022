"""The worker's confluent-kafka outputs (enriched records, chat replies), delivered without
holding the event loop.

Faust's ``send_soon`` costs far more per record than a confluent-kafka producer, so the
enriched records and the chatbot's replies go through two of those: a batching one
(``bulk``) and a low-latency one (``fast``). A committed offset must mean "its enriched
record was delivered", so the worker waits for their delivery before it writes state or
commits offsets. It used to call ``producer.flush(30)`` there, inside the event loop:
with the broker down that held the loop for 30 s per commit (no chat answers, no
heartbeats, no rebalance callbacks, no progress log), and after 30 s it committed anyway.

:class:`Outbox` counts its records in *epochs* instead: every record is counted open in
the current epoch until its delivery report comes; :meth:`Outbox.mark` closes the epoch
and :meth:`Outbox.wait_delivered` awaits (polling, with short sleeps that let the loop run)
until every epoch up to a mark has no open record. A record that failed for a reason
that can pass (the broker was away longer than ``message.timeout.ms``) is produced again
and stays open; one that can never be delivered (too large, not authorised) is logged,
counted in ``errors`` and closed, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError

from app.kafka.clients import delivery_errors, make_producer, produce_when_room

__all__ = ["DELIVERY_POLL_S", "LONG_WAIT_S", "Outbox"]

logger = logging.getLogger(__name__)

DELIVERY_POLL_S = 0.005
"""Sleep between two looks at the delivery reports while a commit waits for them."""

LONG_WAIT_S = 5.0
"""A wait for delivery longer than this is logged (normal: a few ms)."""


def _can_pass(err: KafkaError) -> bool:
    """Would the same record be delivered if produced again later?"""
    return bool(err.retriable()) or err.code() in (KafkaError._MSG_TIMED_OUT,
                                                    KafkaError._TIMED_OUT)  # fmt: skip


class _Epoch:
    """Records produced between two marks; the delivery callback of each of them."""

    __slots__ = ("open", "outbox", "seq")

    def __init__(self, seq: int, outbox: Outbox) -> None:
        self.seq = seq
        self.open = 0
        self.outbox = outbox

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None and _can_pass(err):
            self.outbox.retry.append((self, msg))  # produced again by the next poll
            return
        self.open -= 1
        if err is not None:
            self.outbox.errors(err, msg)


class Outbox:
    """Two producers: ``bulk`` (enriched, 2 ms linger) and ``fast`` (replies, no linger)."""

    @classmethod
    def connect(cls, bootstrap: str) -> Outbox:
        """The worker's outbox: both producers on ``bootstrap``."""
        bulk = make_producer(bootstrap, **{"linger.ms": 2})
        fast = make_producer(bootstrap, **{"linger.ms": 0, "compression.type": "none"})
        return cls(bulk, fast)

    def __init__(self, bulk: Any, fast: Any) -> None:
        self.bulk = bulk
        self.fast = fast
        self.errors = delivery_errors()
        self.retry: list[tuple[_Epoch, Any]] = []
        self.resent = 0  # records produced again after a delivery failure that can pass
        self._epochs: deque[_Epoch] = deque([_Epoch(0, self)])

    def _produce(self, producer: Any, topic: str, key: bytes | None, value: bytes,
                 epoch: _Epoch) -> None:  # fmt: skip
        epoch.open += 1
        produce_when_room(producer, topic, value, key, on_delivery=epoch)

    def send_bulk(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._produce(self.bulk, topic, key, value, self._epochs[-1])

    def send_fast(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._produce(self.fast, topic, key, value, self._epochs[-1])
        self.fast.poll(0)

    def poll(self) -> None:
        """Serve delivery reports; produce again what failed for a reason that can pass."""
        self.bulk.poll(0)
        self.fast.poll(0)
        retry, self.retry = self.retry, []
        for epoch, msg in retry:  # replies too go out through bulk then: late anyway
            epoch.open -= 1  # counted again by _produce
            self.resent += 1
            self._produce(self.bulk, msg.topic(), msg.key(), msg.value(), epoch)
        if retry:
            logger.warning("%d enriched/reply records produced again after a delivery "
                           "failure (%d so far)", len(retry), self.resent)  # fmt: skip

    def mark(self) -> int:
        """Close the current epoch (everything sent so far); returns its number."""
        closed = self._epochs[-1]
        self._epochs.append(_Epoch(closed.seq + 1, self))
        return closed.seq

    def delivered(self, mark: int) -> bool:
        """Is every record of the epochs up to ``mark`` delivered (or failed for good)?"""
        epochs = self._epochs
        while len(epochs) > 1 and epochs[0].open == 0:
            epochs.popleft()
        # epochs[0] is now the first with records open, or the current one (none open)
        return epochs[0].seq > mark or epochs[0].open == 0

    @property
    def open(self) -> int:
        """Records sent and not delivered yet."""
        return sum(e.open for e in self._epochs)

    async def wait_delivered(self, mark: int | None = None) -> float:
        """Return once every record sent before ``mark`` (default: now) is delivered.

        Never blocks the event loop: it polls the delivery reports and sleeps
        :data:`DELIVERY_POLL_S` between looks, as long as it takes (the broker may be down;
        a wait longer than :data:`LONG_WAIT_S` is logged). Returns the seconds waited.
        """
        if mark is None:
            mark = self.mark()
        self.poll()
        if self.delivered(mark):
            return 0.0
        t0, open_ = time.monotonic(), self.open
        while not self.delivered(mark):
            await asyncio.sleep(DELIVERY_POLL_S)
            self.poll()
        waited = time.monotonic() - t0
        if waited > LONG_WAIT_S:
            logger.warning("waited %.1f s for the delivery of %d enriched/reply records "
                           "(event loop free meanwhile)", waited, open_)  # fmt: skip
        return waited

    def flush(self, timeout_s: float) -> int:
        """Blocking: wait up to ``timeout_s`` for every record (for shutdown and scripts
        only, never in the event loop); returns how many are still open."""
        self.poll()
        left = int(self.bulk.flush(timeout_s)) + int(self.fast.flush(timeout_s))
        self.poll()
        return max(left, self.open)
