"""Faust's own ProducerBuffer: stock flush gives up on a slow record, the full flush waits.

The records are handed to a stand-in channel that takes 0.3 s per record (aiokafka
waiting for a full batch to drain); the buffer, its sender task and its flush are
Faust 0.15.3's own code. When the stock test fails, Faust flushes fully and
``app.stream.producer_flush`` can go.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from app.stream.producer_flush import RECHECK_S, install_full_flush

HAND_OVER_S = 0.3  # per record: longer than stock flush's 0.1 s patience


class _SlowChannel:
    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(HAND_OVER_S)
        self.published.append(fut.n)


def _flush_leaves(loop: asyncio.AbstractEventLoop, full: bool) -> tuple[int, int]:
    """Put 3 records, flush; returns (records handed over, records still buffered)."""

    async def run() -> tuple[int, int]:
        buffer = ProducerBuffer(loop=loop)
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        if full:
            install_full_flush(buffer)
        channel = _SlowChannel()
        await buffer.start()
        try:
            for n in range(3):
                buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
            await asyncio.wait_for(buffer.flush(), 10)
            return len(channel.published), buffer.size
        finally:
            for _ in range(100):  # let the rest go out: stopping flushes again
                if not buffer.size:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(HAND_OVER_S * 2)
            await buffer.stop()

    return loop.run_until_complete(run())


def test_stock_flush_returns_with_records_still_buffered(loop: asyncio.AbstractEventLoop) -> None:
    published, left = _flush_leaves(loop, full=False)
    # Faust's flush waited 0.1 s for the first record and returned: the worker would
    # commit offsets whose rows are still in this buffer
    assert published == 0 and left == 2


def test_full_flush_returns_once_every_record_is_handed_over(
    loop: asyncio.AbstractEventLoop,
) -> None:
    assert _flush_leaves(loop, full=True) == (3, 0)


class _FailingChannel:
    """aiokafka's send raised (e.g. its accumulator timed out): the sender task dies."""

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(HAND_OVER_S)
        raise TimeoutError("send timed out")


def test_full_flush_raises_when_the_buffers_sender_dies(loop: asyncio.AbstractEventLoop) -> None:
    """Waiting on ``message_sent`` alone, the flush (so the commit) waited forever."""

    async def run() -> str:
        buffer = ProducerBuffer(loop=loop)
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        install_full_flush(buffer)
        channel = _FailingChannel()
        await buffer.start()
        try:
            for n in range(2):
                buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
            try:
                await asyncio.wait_for(buffer.flush(), RECHECK_S + 5)
            except RuntimeError as exc:
                return str(exc)
            return "returned"
        finally:
            with contextlib.suppress(BaseException):
                await buffer.stop()

    assert loop.run_until_complete(run()) == "Cannot flush: producer buffer crashed"
