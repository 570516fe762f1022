"""Offsets, consumer-group positions and latest records, read with one admin + one consumer.

The reads ``fedstream status`` needs: end offsets of topics, what a group has committed,
how many members it has, and the newest records of a topic (without joining any group).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from app.kafka.admin import make_admin
from app.kafka.clients import make_consumer

__all__ = ["KafkaReader", "PartitionLag"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition: its offsets and how far a group is behind (None = never committed)."""

    topic: str
    partition: int
    start: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        position = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - position)


class KafkaReader:
    """Read-only views of a cluster for status and tests (a context manager)."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._bootstrap = bootstrap
        self._group_consumers: dict[str, Any] = {}
        self.admin: AdminClient = make_admin(bootstrap)
        self._consumer = make_consumer(
            bootstrap, f"fedstream-status-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True}
        )

    def __enter__(self) -> KafkaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for consumer in [self._consumer, *self._group_consumers.values()]:
            consumer.close()

    def partitions(self) -> dict[str, int]:
        """Partition count of every topic on the cluster."""
        meta = self.admin.list_topics(timeout=self.timeout_s)
        return {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}

    def offsets(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """``(start, end)`` offsets of each partition, in one request per kind."""
        tps = list(tps)
        if not tps:
            return {}
        out: dict[tuple[str, int], list[int]] = {tp: [0, 0] for tp in tps}
        earliest, latest = OffsetSpec.earliest(), OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for index, spec in ((0, earliest), (1, latest)):
            request = {TopicPartition(t, p): spec for t, p in tps}
            for tp, future in self.admin.list_offsets(
                request, request_timeout=self.timeout_s
            ).items():
                out[(tp.topic, tp.partition)][index] = int(future.result().offset)
        return {tp: (v[0], v[1]) for tp, v in out.items()}

    def committed(self, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """What ``group`` has committed on ``tps`` (absent: never committed).

        Read through a consumer of that group that never subscribes (so never joins it).
        Not ``AdminClient.list_consumer_group_offsets``: confluent-kafka 2.16.1 crashed the
        process (SIGSEGV) in it while a fresh broker's group coordinator was still loading.
        """
        consumer = self._group_consumers.get(group)
        if consumer is None:
            consumer = self._group_consumers[group] = make_consumer(self._bootstrap, group)
        for attempt in range(20):
            try:
                found = consumer.committed(
                    [TopicPartition(t, p) for t, p in tps], timeout=self.timeout_s
                )
                break
            except KafkaException as exc:  # e.g. the coordinator is still loading
                if attempt == 19:
                    raise
                logger.debug("committed offsets of %s not readable yet: %s", group, exc)
                time.sleep(0.25)
        return {(tp.topic, tp.partition): int(tp.offset) for tp in found if tp.offset >= 0}

    def members(self, group: str) -> int:
        """How many consumers are in ``group`` now (0 when it is empty or unknown)."""
        try:
            desc = self.admin.describe_consumer_groups([group], request_timeout=self.timeout_s)
            return len(desc[group].result().members or [])
        except KafkaException:
            return 0

    def lags(
        self, group: str, partitions: dict[str, int], topics: Iterable[str]
    ) -> list[PartitionLag]:
        """Lag of ``group`` on every partition of ``topics`` that exists."""
        tps = [(t, p) for t in topics for p in range(partitions.get(t, 0))]
        ends = self.offsets(tps)
        committed = self.committed(group, tps) if tps else {}
        return [
            PartitionLag(t, p, ends[(t, p)][0], ends[(t, p)][1], committed.get((t, p)))
            for t, p in tps
        ]

    def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """Records ``start`` .. ``end - 1`` of one partition (the caller keeps it small)."""
        if end <= start:
            return []
        self._consumer.assign([TopicPartition(topic, partition, start)])
        out: list[Any] = []
        try:
            while len(out) < end - start:
                msgs = self._consumer.consume(min(500, end - start - len(out)), self.timeout_s)
                if not msgs:
                    break
                for msg in msgs:
                    if msg.error() is None:
                        out.append(msg)
                    if (msg.offset() or 0) + 1 >= end:
                        return out
        finally:
            self._consumer.unassign()
        return out
