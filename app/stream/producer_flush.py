"""A producer flush that waits for every ``send_soon`` record (faust-streaming 0.15.3).

Faust commits offsets right after ``producer.flush()``, and that flush first drains the
buffer of ``send_soon`` records (the worker's frames, enriched records, dead letters and
every table write go through it). Stock ``ProducerBuffer.flush`` gives up as soon as one
record takes longer than 0.1 s to hand to aiokafka (``flush_atmost``: ``wait_for(...,
timeout=0.1)`` then ``return``), which happens whenever aiokafka's batch for a partition
is full and waits for the broker. The records still in the buffer are then not part of
aiokafka's flush, the offsets are committed anyway, and a SIGKILL right after loses their
rows (seen: a restarted worker missing 486 rows, 0 repeated).

:func:`install_full_flush` replaces the flush of one buffer: it returns once the queue is
empty *and* the record taken from it last has been handed to aiokafka (appended to its
batch, so aiokafka's own flush waits for its delivery). The stock behaviour is tested in
``tests/unit/test_stream_producer_flush.py``; when that test fails, Faust flushes fully
and this module can go.

The full flush never waits on the buffer's ``message_sent`` alone: if the sender task
dies (``publish_message`` raised, e.g. aiokafka's send timed out), nothing sets it again,
and a flush waiting on it would hold the commit forever. It looks at the buffer's state
every :data:`RECHECK_S` and raises once the buffer is no longer running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["RECHECK_S", "install_full_flush"]

logger = logging.getLogger(__name__)

RECHECK_S = 1.0
"""How often a waiting flush looks at the buffer's state again."""


class _FullFlush:
    """Counts the record being handed over by the buffer's sender task."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer
        self.in_flight = 0
        self._send: Callable[[Any], Awaitable[None]] = buffer._send_pending

    async def send_pending(self, fut: Any) -> None:
        self.in_flight += 1
        try:
            await self._send(fut)
        finally:
            self.in_flight -= 1

    async def flush(self) -> None:
        buffer = self.buffer
        while buffer.size or self.in_flight:
            if buffer.state != "running":
                raise RuntimeError(f"Cannot flush: producer buffer {buffer.state}")
            # set by the buffer's sender task after each record it handed over; looked at
            # again every RECHECK_S: a sender task that crashed never sets it again
            buffer.message_sent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), RECHECK_S)


def install_full_flush(buffer: Any) -> None:
    """Make ``buffer.flush()`` (Faust's ``ProducerBuffer``) wait for every record.

    Must run before the buffer's service starts: its sender task reads
    ``_send_pending`` once, when it starts.
    """
    full = _FullFlush(buffer)
    buffer._send_pending = full.send_pending
    buffer.flush = full.flush
