"""confluent-kafka producer/consumer factories with sensible defaults for fedstream."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from app.kafka.room import produce_when_room
from app.kafka.security import client_config

__all__ = ["delivery_errors", "make_consumer", "make_producer", "produce_when_room"]

logger = logging.getLogger(__name__)


def make_producer(bootstrap: str, **overrides: Any) -> Producer:
    """A batching, idempotent producer (lz4, 20 ms linger), acting as the process's
    principal (app.kafka.security; ``acting_as`` for another).

    Keys are partitioned with murmur2 like Kafka's Java clients and aiokafka, so records
    keyed by customer_id land in the same partition whoever produces them (co-partitioning).
    """
    config: dict[str, Any] = {
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.size": 512 * 1024,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return Producer(client_config(bootstrap, None, **config))


def make_consumer(bootstrap: str, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that starts from the earliest offset and commits only when told."""
    config: dict[str, Any] = {
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.message.max.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return Consumer(client_config(bootstrap, None, **config))


class delivery_errors:
    """Delivery callback that counts failures and remembers the first error."""

    def __init__(self) -> None:
        self.failed = 0
        self.first: KafkaError | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            if self.first is None:
                self.first = err
                logger.error("delivery to %s failed: %s", msg.topic(), err)
