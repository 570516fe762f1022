"""ChatRequestReader: once its thread runs, only that thread calls the consumer.

A commit from the event loop beside the thread's poll never returned (a revoke hung in it
and the group could not rebalance: test_stream_rebalance), so the loop only records what
to follow and what was answered. The consumer here is a stand-in that notes the calling
thread of every call; the real one is exercised by the chat integration tests.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from app.stream import chat_reader
from app.stream.chat_reader import ChatRequestReader


class _Msg:
    def __init__(self, partition: int) -> None:
        self._partition = partition

    def partition(self) -> int:
        return self._partition

    def error(self) -> None:
        return None


class _Consumer:
    """Hands out queued messages; notes (method, thread name) of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.queue: list[_Msg] = []
        self.stored: list[_Msg] = []
        self.assigned: list[Any] = []

    def _note(self, name: str) -> None:
        self.calls.append((name, threading.current_thread().name))

    def assign(self, tps: list[Any]) -> None:
        self._note("assign")
        self.assigned = tps

    def poll(self, timeout: float) -> _Msg | None:
        self._note("poll")
        if self.queue:
            return self.queue.pop(0)
        threading.Event().wait(min(timeout, 0.01))
        return None

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        self._note("consume")
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def store_offsets(self, message: _Msg) -> None:
        self._note("store_offsets")
        self.stored.append(message)

    def commit(self, asynchronous: bool) -> None:
        self._note("commit")

    def close(self) -> None:
        self._note("close")


def test_only_the_reader_thread_calls_the_consumer_once_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    consumer = _Consumer()
    monkeypatch.setattr(chat_reader, "make_consumer", lambda *a, **k: consumer)
    reader = ChatRequestReader("unused:9092", ["req"], "group")
    handled: list[int] = []

    async def scenario() -> None:
        got = asyncio.Event()

        def handle(msgs: list[Any]) -> None:
            for m in msgs:
                handled.append(m.partition())
                reader.done(m)
            got.set()

        reader.start(asyncio.get_running_loop(), handle)
        reader.follow({0, 1})  # from the loop, as on a rebalance
        consumer.queue += [_Msg(0), _Msg(1)]
        await asyncio.wait_for(got.wait(), 10)
        reader.follow({1})  # a revoke of partition 0: no longer answered
        got.clear()
        consumer.queue += [_Msg(0), _Msg(1)]
        await asyncio.wait_for(got.wait(), 10)

    # Execute
    calls_before = len(consumer.calls)  # the consumer's creation: none
    asyncio.run(scenario())
    calls_open = len(consumer.calls)
    reader.close()

    # Verify
    assert handled == [0, 1, 1]
    threads = {name for _m, name in consumer.calls[calls_before:calls_open]}
    assert threads == {"fedstream-chat-reader"}
    assert [m.partition() for m in consumer.stored] == [0, 1, 1]
    assert consumer.calls[-1][0] == "close"
    assert sorted(tp.partition for tp in consumer.assigned) == [1]
