"""What the demo's live view shows, read from Kafka once a second.

Throughput comes from high watermarks (no records are read): produced events are the
input topics' ends, processed events are ``features.enriched``'s, batches per silo the
silo topics'. Round metrics are read from ``fl.metrics`` (key = model name).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from app.kafka.clients import make_consumer
from topics import FEATURES_ENRICHED, FL_METRICS, TRANSACTIONS, silo_batches

__all__ = ["Monitor", "Snapshot"]

logger = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One refresh of the live view."""

    elapsed_s: float
    transactions: int
    enriched: int
    produced_per_s: float
    enriched_per_s: float
    batches: dict[int, int]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def round(self) -> int:
        return int(self.rounds[-1]["round"]) if self.rounds else 0


class Monitor:
    """Watermarks of the demo's topics and the model's ``fl.metrics`` documents."""

    def __init__(self, bootstrap: str, silo_ids: tuple[int, ...], model_name: str) -> None:
        self.silo_ids = silo_ids
        self.model_name = model_name.encode()
        self._consumer = make_consumer(bootstrap, f"fedstream-demo-{uuid.uuid4().hex[:8]}")
        self._watch = make_consumer(bootstrap, f"fedstream-demo-w-{uuid.uuid4().hex[:8]}")
        self._consumer.assign([TopicPartition(FL_METRICS, 0, OFFSET_BEGINNING)])
        self._partitions = {t: self._parts(t) for t in (TRANSACTIONS, FEATURES_ENRICHED)}
        self._partitions.update({silo_batches(s): self._parts(silo_batches(s)) for s in silo_ids})
        self._start = time.monotonic()
        self._base = {t: self._end(t) for t in self._partitions}
        self._history: deque[tuple[float, int, int]] = deque(maxlen=6)
        self.rounds: list[dict[str, Any]] = []

    def _parts(self, topic: str) -> list[int]:
        meta = self._watch.list_topics(topic, timeout=10).topics.get(topic)
        return sorted(meta.partitions) if meta is not None and meta.partitions else [0]

    def _end(self, topic: str) -> int:
        total = 0
        for p in self._partitions[topic]:
            _low, high = self._watch.get_watermark_offsets(
                TopicPartition(topic, p), timeout=5, cached=False
            )
            total += max(high, 0)
        return total

    def _count(self, topic: str) -> int:
        return self._end(topic) - self._base[topic]

    def _read_metrics(self) -> None:
        for msg in self._consumer.consume(num_messages=500, timeout=0.05):
            if msg.error() is None and msg.key() == self.model_name and msg.value():
                self.rounds.append(orjson.loads(msg.value() or b"{}"))

    def snapshot(self) -> Snapshot:
        self._read_metrics()
        now = time.monotonic()
        txns, enriched = self._count(TRANSACTIONS), self._count(FEATURES_ENRICHED)
        self._history.append((now, txns, enriched))
        t0, p0, e0 = self._history[0]
        span = max(now - t0, 1e-9)
        return Snapshot(
            elapsed_s=now - self._start,
            transactions=txns,
            enriched=enriched,
            produced_per_s=(txns - p0) / span if len(self._history) > 1 else 0.0,
            enriched_per_s=(enriched - e0) / span if len(self._history) > 1 else 0.0,
            batches={s: self._count(silo_batches(s)) for s in self.silo_ids},
            rounds=list(self.rounds),
        )

    def close(self) -> None:
        self._consumer.close()
        self._watch.close()
