"""Partition-safe input: records on a partition their key does not hash to are forwarded.

The worker joins a transaction with the profile and window state of its partition, so a
customer's records must all be on ``partition_for(customer_id)`` (murmur2, Kafka's
default). A producer with another partitioner (librdkafka's default CRC32, e.g. kcat)
puts them elsewhere. The worker does not process such a record where it is: it sends a
copy to the right partition of the same topic, marked with the header
:data:`FORWARDED_HEADER` (``"<topic>/<partition>@<offset>"`` of the original), and counts
it (``fedstream_mispartitioned_total``). The copy then joins the right state in order
with the customer's other records, and the window state's per-partition offsets stay one
sequence. Forwarding is at-least-once like every output (Faust flushes its producer
before a commit): a copy sent twice after a crash is dropped as a repeated ``txn_id``.

Chatbot requests are keyed by customer id too, and only the worker owning the customer's
partition holds its tables: a misplaced request is forwarded the same way (through the
worker's reply producer, :meth:`Repartitioner.forward_request_if_misplaced`) and answered
by the owner; the copy keeps the request's timestamp, so the chat latency counts the hop.
"""

from __future__ import annotations

import logging
from typing import Any

from app.features.partitioning import partition_for
from app.kafka.clients import produce_when_room
from app.ops import metrics

__all__ = ["FORWARDED_HEADER", "Repartitioner", "misplaced_target"]

logger = logging.getLogger(__name__)

FORWARDED_HEADER = "fedstream-forwarded-from"


class Repartitioner:
    """Decides where an input record belongs and forwards it when it is misplaced."""

    def __init__(self, partitions: int, topics: dict[str, Any]) -> None:
        self.partitions = partitions
        self._topics = topics  # input topic name -> Faust topic to send the copy with
        self.forwarded = 0

    def forward_if_misplaced(self, event: Any) -> bool:
        """True when ``event`` was forwarded (the caller skips it); False to process it."""
        msg = event.message
        if msg.topic not in self._topics:
            return False
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        target = misplaced_target(msg.key, msg.partition, msg.headers, self.partitions, where)
        if target is None:
            return False
        origin = f"{msg.topic}/{msg.partition}@{msg.offset}".encode()
        self._topics[msg.topic].send_soon(key=msg.key, value=msg.value, partition=target,
                                          timestamp=msg.timestamp,
                                          headers=[(FORWARDED_HEADER, origin)])  # fmt: skip
        self.forwarded += 1
        metrics.MISPARTITIONED.labels(topic=msg.topic).inc()
        return True

    def forward_request_if_misplaced(self, msg: Any, producer: Any, on_delivery: Any) -> bool:
        """The same for a chat request (a confluent-kafka message), sent with ``producer``."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        where = f"{topic}[{partition}]@{offset}"
        target = misplaced_target(msg.key(), partition, msg.headers(), self.partitions, where)
        if target is None:
            return False
        headers = [(FORWARDED_HEADER, f"{topic}/{partition}@{offset}".encode())]
        kind, ts = msg.timestamp()
        when = {"timestamp": ts} if kind and ts > 0 else {}
        produce_when_room(producer, topic, msg.value(), msg.key(), partition=target,
                          headers=headers, on_delivery=on_delivery, **when)  # fmt: skip
        producer.poll(0)
        self.forwarded += 1
        metrics.MISPARTITIONED.labels(topic=topic).inc()
        return True


def misplaced_target(
    key: bytes | None, partition: int, headers: Any, partitions: int, where: str
) -> int | None:
    """The partition a keyed record belongs on, or None to process it where it is."""
    if key is None:
        return None
    target = partition_for(bytes(key), partitions)
    if target == partition:
        return None
    if any(_name(h) == FORWARDED_HEADER for h in headers or []):
        # Already forwarded once: the partition count changed since. Process it here
        # rather than forward in circles.
        logger.warning("forwarded record %s still misplaced", where)
        return None
    return target


def _name(header: Any) -> str:
    name = header[0] if isinstance(header, tuple | list) else getattr(header, "key", "")
    return name.decode() if isinstance(name, bytes) else str(name)
