"""Fetched records Faust's getmany never hands out, on Faust's own consumer code (no broker).

What the rebalance test showed on a loaded box: a fetch for a fresh partition was under way
when Faust paused that partition (its tables started recovering); Faust's ``getmany`` then
skipped the fetched records, aiokafka's position was already past them, and the
``perform_seek`` after recovery goes to the committed offset, which a partition never
committed does not have: the first few hundred transactions were never processed. The
tests drive Faust's real ``getmany`` and ``_drain_messages`` bookkeeping; only the aiokafka
thread (fetch, seek, assignment) is replaced by a recorder.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from app.stream.offsets import OffsetSafeConsumer, WorkerFaustApp

TOPIC = "bank.transactions"
TP0 = TP(TOPIC, 0)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())


class FakeThread:
    """The aiokafka side: one fetch of ``records``, seeks recorded."""

    def __init__(self, consumer: aiokafka_driver.Consumer, records: list[Any], during: Any):
        self.consumer, self.records, self.during = consumer, records, during
        self.seeks: list[tuple[TP, int]] = []
        self.fetches = 0

    async def getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[Any]]:
        self.fetches += 1
        self.during(self.consumer)  # what happens while the fetch is under way
        return {TP0: self.records}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TP]:
        return {TP0}

    def highwater(self, tp: TP) -> int:
        return 100


def start(consumer: aiokafka_driver.Consumer) -> None:
    """As after an assignment: TP0 active, flow on."""
    consumer._set_active_tps({TP0})
    consumer.resume_flow()


def hand_out(app_class: type[faust.App], during: Any, stop_after: int | None, loop: Any) -> Any:
    """Run one getmany over records 0..9; returns (offsets handed out, seeks)."""
    app = app_class(f"refetch-{app_class.__name__}", broker="kafka://127.0.0.1:1",
                    web_enabled=False)  # fmt: skip
    consumer = app.consumer
    assert isinstance(consumer, aiokafka_driver.Consumer)
    thread = FakeThread(consumer, [record(o) for o in range(10)], during)
    consumer._thread = thread  # type: ignore[assignment]
    start(consumer)

    async def run() -> list[int]:
        handed = []
        async for _tp, message in consumer.getmany(timeout=1.0):
            handed.append(message.offset)
            if stop_after is not None and len(handed) == stop_after:
                consumer.stop_flow()  # a rebalance starts
        return handed

    handed = loop.run_until_complete(run())
    assert thread.fetches == 1, "the test did not reach Faust's fetch"
    return handed, thread.seeks


def paused(consumer: aiokafka_driver.Consumer) -> None:
    consumer.pause_partitions({TP0})  # Faust's own call (table recovery of TP0 starts)


def nothing(consumer: aiokafka_driver.Consumer) -> None:
    pass


def test_stock_faust_drops_a_paused_partitions_fetch(loop: asyncio.AbstractEventLoop) -> None:
    """When this fails, Faust hands out or re-fetches them: OffsetSafeConsumer.getmany can go."""
    assert faust.__version__ == "0.15.3", "re-check getmany on this version, then re-pin"

    handed, seeks = hand_out(faust.App, paused, None, loop)

    assert handed == [] and seeks == []  # ten records gone, position left past them


def test_stock_faust_drops_the_rest_when_flow_stops(loop: asyncio.AbstractEventLoop) -> None:
    handed, seeks = hand_out(faust.App, nothing, 3, loop)

    assert handed == [0, 1, 2] and seeks == []


@pytest.mark.parametrize(("during", "stop_after", "handed", "seek_to"),
                         [(paused, None, [], 0), (nothing, 3, [0, 1, 2], 3)])  # fmt: skip
def test_worker_consumer_fetches_unhanded_records_again(
    loop: asyncio.AbstractEventLoop, during: Any, stop_after: int | None, handed: list[int],
    seek_to: int,
) -> None:  # fmt: skip
    got, seeks = hand_out(WorkerFaustApp, during, stop_after, loop)

    assert got == handed
    assert seeks == [(TP0, seek_to)]


def test_every_record_handed_out_means_no_seek(loop: asyncio.AbstractEventLoop) -> None:
    got, seeks = hand_out(WorkerFaustApp, nothing, None, loop)

    assert got == list(range(10)) and seeks == []


def test_a_partition_positioned_meanwhile_is_left_alone(loop: asyncio.AbstractEventLoop) -> None:
    """Table recovery seeks its changelogs itself (seek_wait): that position wins."""
    app = WorkerFaustApp("refetch-seeked", broker="kafka://127.0.0.1:1", web_enabled=False)
    consumer = app.consumer
    assert isinstance(consumer, OffsetSafeConsumer)
    thread = FakeThread(consumer, [record(o) for o in range(10)], paused)
    consumer._thread = thread  # type: ignore[assignment]
    start(consumer)
    fetch = consumer._wait_next_records

    async def fetch_then_recovery_seeks(timeout: float) -> Any:
        result = await fetch(timeout)
        consumer._tp_seeks[TP0] = consumer._tp_seeks.get(TP0, 0) + 1  # as seek_wait counts
        return result

    consumer._wait_next_records = fetch_then_recovery_seeks  # type: ignore[method-assign]

    async def run() -> list[int]:
        return [message.offset async for _tp, message in consumer.getmany(timeout=1.0)]

    assert loop.run_until_complete(run()) == [] and thread.seeks == []
