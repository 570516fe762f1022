"""The chat request topics read with librdkafka, polled from the worker's event loop.

Through a Faust agent a request travelled with the transactions: fetched and parsed in
Python by Faust's consumer thread (aiokafka), handed to the event loop through the GIL,
queued behind whatever that fetch carried. This reader has its own librdkafka consumer
(fetching and parsing in C threads). A thread of its own waits in librdkafka until a
request arrives and hands it to the event loop at once (``call_soon_threadsafe`` wakes the
loop): the loop polled every 2 ms before (about 1 ms of every reply, 500 wake-ups/s).
That thread is the only one that calls the consumer once it runs: a commit from the event
loop beside its poll never returned (synchronous or not; a revoke hung in it and the group
could not rebalance), so the loop only says what to follow and what was answered.

It reads exactly the partitions of every tenant's request topic whose numbers the worker
owns in ``bank.transactions`` (the topics are co-partitioned by customer id, so the worker
that holds a customer's tables answers about it): :meth:`follow` is called on every Faust
rebalance. Offsets are stored once a request is answered and committed every second under
the reader's own consumer group: at-least-once, like the agent it replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from app.kafka.clients import make_consumer

__all__ = ["BLOCK_S", "ChatRequestReader"]

BLOCK_S = 0.1
"""Longest wait of the reader thread in librdkafka: how soon it applies a new assignment,
stores answered offsets or sees a stop."""


class ChatRequestReader:
    """A manually assigned consumer of the chat request topics (see the module docstring)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], group: str) -> None:
        self.topics = tuple(topics)
        self._partitions: set[int] = set()  # followed: answered (the event loop's view)
        self._assigned: set[int] = set()  # what the consumer reads (its caller's view)
        self._answered: deque[Any] = deque()  # offsets to store, by the consumer's caller
        self._closed = False
        self._stop = threading.Event()
        self._handled = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = make_consumer(
            bootstrap,
            group,
            **{
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,  # stored once answered (done)
                "auto.commit.interval.ms": 1000,
                # a long poll: the broker answers a waiting fetch as soon as a request is
                # appended; 10 ms made ~100 empty fetches/s of broker (and TLS) work
                "fetch.wait.max.ms": 500,
            },
        )

    @property
    def partitions(self) -> set[int]:
        return set(self._partitions)

    def follow(self, partitions: set[int]) -> None:
        """Answer exactly these partitions from now on (read from the group's committed
        offsets). Requests of other partitions are not answered after this call; the
        reader thread commits what was answered and reassigns the consumer within
        ``BLOCK_S`` (at once when no thread runs)."""
        if self._closed:
            return
        self._partitions = set(partitions)
        if self._thread is None:
            self._apply()

    def _apply(self) -> None:
        """Store answered offsets; commit and reassign when the followed set changed."""
        self._store_answered()
        want = self._partitions
        if want == self._assigned:
            return
        if self._assigned:
            self._commit()
        self._consumer.assign([TopicPartition(t, p) for t in self.topics for p in sorted(want)])
        self._assigned = set(want)

    def _store_answered(self) -> None:
        while self._answered:
            msg = self._answered.popleft()
            with contextlib.suppress(KafkaException):  # its partition is no longer assigned
                self._consumer.store_offsets(message=msg)

    def poll(self, max_records: int = 64, timeout_s: float = 0.0) -> list[Any]:
        """Requests that are here within ``timeout_s`` (0: never blocks; one wait, then
        what else is already here); errors are skipped. Only the reader thread calls it
        once it runs."""
        if self._closed or not self._assigned:
            return []
        # consume(n, timeout) would wait for all n or the whole timeout: poll for the first
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        msgs = [first, *self._consumer.consume(num_messages=max_records - 1, timeout=0)]
        return [m for m in msgs if m.error() is None]

    def done(self, msg: Any) -> None:
        """Mark a request answered: its offset may be committed."""
        if self._closed:
            return
        self._answered.append(msg)
        if self._thread is None:
            self._store_answered()

    def start(self, loop: asyncio.AbstractEventLoop, handle: Callable[[list[Any]], None]) -> None:
        """Read in a thread: each batch of requests is ``handle``d in ``loop``, one batch at
        a time (the next is read once ``handle`` returned). Requests of partitions no
        longer followed (a rebalance meanwhile) are left to their new owner."""
        self._thread = threading.Thread(
            target=self._run, args=(loop, handle), name="fedstream-chat-reader", daemon=True
        )
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, handle: Callable[[list[Any]], None]) -> None:
        while not self._stop.is_set():
            self._apply()
            if not self._assigned:
                self._stop.wait(BLOCK_S)
                continue
            msgs = self.poll(timeout_s=BLOCK_S)
            if not msgs:
                continue
            self._handled.clear()
            try:
                loop.call_soon_threadsafe(self._deliver, handle, msgs)
            except RuntimeError:  # the loop is closed: the worker is going away
                return
            while not self._handled.wait(BLOCK_S):
                if self._stop.is_set():
                    return

    def _deliver(self, handle: Callable[[list[Any]], None], msgs: list[Any]) -> None:
        try:
            followed = self._partitions
            mine = [m for m in msgs if m.partition() in followed]
            if mine and not self._closed:
                handle(mine)
        finally:
            self._handled.set()

    def _commit(self) -> None:
        # KafkaError _NO_OFFSET when nothing was stored yet: nothing to commit
        with contextlib.suppress(KafkaException):
            self._consumer.commit(asynchronous=False)

    def close(self) -> None:
        """Commit what was answered and close; later calls of any method do nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(BLOCK_S * 10)  # never touch the consumer beside its poll
        self._store_answered()
        self._commit()
        self._consumer.close()
