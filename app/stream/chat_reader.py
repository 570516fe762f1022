"""The chat request topics read with librdkafka, polled from the worker's event loop.

Through a Faust agent a request travelled with the transactions: fetched and parsed in
Python by Faust's consumer thread (aiokafka), handed to the event loop through the GIL,
queued behind whatever that fetch carried. This reader has its own librdkafka consumer
(fetching and parsing in C threads) that the event loop polls without blocking.

It reads exactly the partitions of every tenant's request topic whose numbers the worker
owns in ``bank.transactions`` (the topics are co-partitioned by customer id, so the worker
that holds a customer's tables answers about it): :meth:`follow` is called on every Faust
rebalance. Offsets are stored once a request is answered and committed every second under
the reader's own consumer group: at-least-once, like the agent it replaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from app.kafka.clients import make_consumer

__all__ = ["ChatRequestReader"]


class ChatRequestReader:
    """A manually assigned consumer of the chat request topics (see the module docstring)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], group: str) -> None:
        self.topics = tuple(topics)
        self._partitions: set[int] = set()
        self._closed = False
        self._consumer = make_consumer(
            bootstrap,
            group,
            **{
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,  # stored in done(): answered requests
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
        """Read exactly these partitions from now on (from the group's committed offsets)."""
        if self._closed or partitions == self._partitions:
            return
        if self._partitions:
            self._commit()
        self._consumer.assign(
            [TopicPartition(t, p) for t in self.topics for p in sorted(partitions)]
        )
        self._partitions = set(partitions)

    def poll(self, max_records: int = 64) -> list[Any]:
        """Requests that are already here (never blocks); errors are skipped."""
        if self._closed or not self._partitions:
            return []
        msgs = self._consumer.consume(num_messages=max_records, timeout=0)
        return [m for m in msgs if m.error() is None]

    def done(self, msg: Any) -> None:
        """Mark a request answered: its offset may be committed."""
        if not self._closed:
            self._consumer.store_offsets(message=msg)

    def _commit(self) -> None:
        # KafkaError _NO_OFFSET when nothing was stored yet: nothing to commit
        with contextlib.suppress(KafkaException):
            self._consumer.commit(asynchronous=False)

    def close(self) -> None:
        """Commit what was answered and close; later calls of any method do nothing."""
        if self._closed:
            return
        self._closed = True
        self._commit()
        self._consumer.close()
