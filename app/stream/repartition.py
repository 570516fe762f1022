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
"""

from __future__ import annotations

import logging
from typing import Any

from app.features.partitioning import partition_for
from app.ops import metrics

__all__ = ["FORWARDED_HEADER", "Repartitioner"]

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
        key = msg.key
        if key is None or msg.topic not in self._topics:
            return False
        target = partition_for(bytes(key), self.partitions)
        if target == msg.partition:
            return False
        headers = msg.headers or []
        if any(_name(h) == FORWARDED_HEADER for h in headers):
            # Already forwarded once: the partition count changed since. Process it here
            # rather than forward in circles.
            logger.warning("forwarded record %s[%d]@%d still misplaced", msg.topic,
                           msg.partition, msg.offset)  # fmt: skip
            return False
        origin = f"{msg.topic}/{msg.partition}@{msg.offset}".encode()
        self._topics[msg.topic].send_soon(key=key, value=msg.value, partition=target,
                                          timestamp=msg.timestamp,
                                          headers=[(FORWARDED_HEADER, origin)])  # fmt: skip
        self.forwarded += 1
        metrics.MISPARTITIONED.labels(topic=msg.topic).inc()
        return True


def _name(header: Any) -> str:
    name = header[0] if isinstance(header, tuple | list) else getattr(header, "key", "")
    return name.decode() if isinstance(name, bytes) else str(name)
