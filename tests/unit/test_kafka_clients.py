"""produce_when_room: a full local queue is waited out, never a dropped record."""

from __future__ import annotations

from typing import Any

from app.kafka.clients import produce_when_room


class _FullThenRoom:
    """A producer whose queue is full for the first ``full`` calls."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.polls: list[float] = []
        self.sent: list[tuple[str, Any, Any, dict[str, Any]]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key, kw))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0


def test_waits_while_the_queue_is_full_then_sends_once() -> None:
    producer = _FullThenRoom(full=3)
    produce_when_room(producer, "t", b"v", b"k", 0.01, partition=2)  # type: ignore[arg-type]
    assert producer.sent == [("t", b"v", b"k", {"partition": 2})]
    assert producer.polls == [0.01, 0.01, 0.01]


def test_room_at_once_sends_without_polling() -> None:
    producer = _FullThenRoom(full=0)
    produce_when_room(producer, "t", b"v")  # type: ignore[arg-type]
    assert producer.sent == [("t", b"v", None, {})] and producer.polls == []
