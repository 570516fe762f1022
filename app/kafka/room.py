"""``produce_when_room``, on its own: it needs nothing of fedstream, so ``bench chat
--against REV`` can load it by file for a revision older than it (bench/chat_leg.py)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

__all__ = ["produce_when_room"]


def produce_when_room(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    wait_s: float = 0.05,
    **kwargs: Any,
) -> None:
    """``producer.produce``; while its local queue is full, serve delivery reports for
    ``wait_s`` (which frees room) and try again, so no record is dropped."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:
            producer.poll(wait_s)
