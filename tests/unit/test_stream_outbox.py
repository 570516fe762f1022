"""The outbox's delivery wait: what was sent before a mark, delivered; the loop runs on.

The producers here only record what was produced and hand the test each record's delivery
callback (the broker's part); the real producers are in test_stream_broker_outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from app.stream.outbox import Outbox


class _Msg:
    def __init__(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._t, self._k, self._v = topic, key, value

    def topic(self) -> str:
        return self._t

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes:
        return self._v


class _Producer:
    """Records produce calls; ``report(i, err)`` is the broker answering record ``i``."""

    def __init__(self) -> None:
        self.sent: list[tuple[_Msg, Any]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.sent.append((_Msg(topic, key, value), on_delivery))

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def report(self, i: int, err: KafkaError | None = None) -> None:
        msg, cb = self.sent[i]
        cb(err, msg)


def _outbox() -> tuple[Outbox, _Producer, _Producer]:
    bulk, fast = _Producer(), _Producer()
    return Outbox(bulk, fast), bulk, fast


def test_a_mark_is_delivered_once_every_record_sent_before_it_is() -> None:
    outbox, bulk, fast = _outbox()
    outbox.send_bulk("enriched", b"a", b"1")
    outbox.send_fast("replies", b"r", b"2")
    mark = outbox.mark()
    outbox.send_bulk("enriched", b"b", b"3")  # after the mark: does not hold it
    assert not outbox.delivered(mark) and outbox.open == 3
    bulk.report(0)
    assert not outbox.delivered(mark)
    fast.report(0)
    assert outbox.delivered(mark) and outbox.open == 1
    later = outbox.mark()
    assert not outbox.delivered(later)
    bulk.report(1)
    assert outbox.delivered(later) and outbox.open == 0


def test_records_delivered_out_of_order_count_per_epoch() -> None:
    outbox, bulk, _fast = _outbox()
    outbox.send_bulk("enriched", b"a", b"1")
    first = outbox.mark()
    outbox.send_bulk("enriched", b"b", b"2")
    second = outbox.mark()
    bulk.report(1)  # the later epoch's record first (another partition)
    assert not outbox.delivered(first) and not outbox.delivered(second)
    bulk.report(0)
    assert outbox.delivered(first) and outbox.delivered(second)


def test_a_record_that_timed_out_is_produced_again_and_stays_open() -> None:
    outbox, bulk, _fast = _outbox()
    outbox.send_bulk("enriched", b"a", b"1")
    mark = outbox.mark()
    bulk.report(0, KafkaError(KafkaError._MSG_TIMED_OUT))  # the broker was away too long
    outbox.poll()
    assert not outbox.delivered(mark) and outbox.resent == 1 and outbox.errors.failed == 0
    assert [m.value() for m, _cb in bulk.sent] == [b"1", b"1"]
    bulk.report(1)
    assert outbox.delivered(mark)


def test_a_record_that_can_never_be_delivered_is_counted_and_closed() -> None:
    outbox, bulk, _fast = _outbox()
    outbox.send_bulk("enriched", b"a", b"1")
    mark = outbox.mark()
    bulk.report(0, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    outbox.poll()
    assert outbox.delivered(mark) and outbox.errors.failed == 1 and outbox.resent == 0


def test_waiting_for_delivery_leaves_the_event_loop_running() -> None:
    outbox, bulk, _fast = _outbox()
    outbox.send_bulk("enriched", b"a", b"1")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def broker_back_after(delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        bulk.report(0)

    async def run() -> float:
        tick = asyncio.ensure_future(ticker())
        back = asyncio.ensure_future(broker_back_after(0.5))
        try:
            return await asyncio.wait_for(outbox.wait_delivered(), 5)
        finally:
            tick.cancel()
            await back

    waited = asyncio.run(run())
    assert waited == pytest.approx(0.5, abs=0.4)
    assert ticks >= 10  # the loop ran other tasks while the delivery was awaited
    assert bulk.polls >= 10  # and served the delivery reports meanwhile
