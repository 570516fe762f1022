"""The commit crawl after a rebalance, on Faust's own consumer code (no broker, no mocks).

What the worker's diagnostics showed after a rebalance: ``perform_seek`` set the read
offset of a partition back to its committed offset ``c``; a record ``c + n`` fetched before
the seek arrived next and made Faust note a gap ``c + 1 .. c + n``; the re-fetch from ``c``
then delivered and acked those offsets as well. The tests replay exactly that on the
consumer classes the worker can run: Faust's stock one and ``OffsetSafeConsumer``.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.tuples import Message

from app.stream.offsets import OffsetSafeConsumer, WorkerFaustApp

TOPIC = "bank.transactions"
TP0 = TP(TOPIC, 0)


def make_consumer(app_class: type[faust.App]) -> aiokafka_driver.Consumer:
    app = app_class(f"offsets-{app_class.__name__}", broker="kafka://127.0.0.1:1",
                    web_enabled=False)  # fmt: skip
    app.topics._acking_topics.add(TOPIC)  # as for every topic an agent consumes
    consumer = app.consumer
    assert isinstance(consumer, aiokafka_driver.Consumer)
    return consumer


def ack(consumer: aiokafka_driver.Consumer, offsets: range) -> None:
    for offset in offsets:
        msg = Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP0)
        consumer.ack(msg)


def commits(consumer: aiokafka_driver.Consumer, n: int) -> list[int | None]:
    """What ``n`` successive commits would commit (Faust's own bookkeeping in between)."""
    out = []
    for _ in range(n):
        offset = consumer._new_offset(TP0)
        if offset is not None and consumer._should_commit(TP0, offset):
            consumer._committed_offset[TP0] = offset
            out.append(offset)
        else:
            out.append(None)
    return out


def after_rebalance(consumer: aiokafka_driver.Consumer, loop: asyncio.AbstractEventLoop) -> None:
    """Committed 1000; a stale record 1024 noted a gap; then 1000..1199 were acked."""
    consumer._committed_offset[TP0] = 1000
    consumer._read_offset[TP0] = 1000
    loop.run_until_complete(consumer._add_gap(TP0, 1001, 1024))
    ack(consumer, range(1000, 1200))


def test_stock_faust_still_crawls(loop: asyncio.AbstractEventLoop) -> None:
    """When this fails, faust-streaming fixed the crawl: remove app/stream/offsets.py."""
    # Prepare
    assert faust.__version__ == "0.15.3", "re-check the crawl on this version, then re-pin"
    consumer = make_consumer(faust.App)
    assert type(consumer) is aiokafka_driver.Consumer
    after_rebalance(consumer, loop)

    # Execute
    got = commits(consumer, 5)

    # Assert: one record per commit although 1000..1199 are all acked
    assert got == [1002, 1003, 1004, 1005, 1006]


def test_worker_consumer_commits_everything_acked(loop: asyncio.AbstractEventLoop) -> None:
    consumer = make_consumer(WorkerFaustApp)
    assert isinstance(consumer, OffsetSafeConsumer)
    after_rebalance(consumer, loop)

    got = commits(consumer, 3)

    assert got == [1200, None, None]
    assert not consumer._acked[TP0] and not consumer._acked_index[TP0]


@pytest.mark.parametrize(
    ("gap", "acked", "want"),
    [
        (None, [range(1000, 1100)], [1100]),  # no gap: as stock
        (None, [range(1000, 1050), range(1060, 1100)], [1050]),  # hole: stop before it
        ((1050, 1059), [range(1000, 1050), range(1060, 1100)], [1100]),  # a real gap
        ((1001, 1004), [range(1006, 1100)], [1005]),  # gap, then a hole at 1005
        (None, [range(1002, 1100)], [None]),  # 1000, 1001 not acked: nothing to commit
    ],
)
def test_same_commits_as_stock_without_duplicates(
    loop: asyncio.AbstractEventLoop,
    gap: tuple[int, int] | None,
    acked: list[range],
    want: list[int | None],
) -> None:
    results = []
    for app_class in (faust.App, WorkerFaustApp):
        consumer = make_consumer(app_class)
        consumer._committed_offset[TP0] = 1000
        if gap is not None:
            loop.run_until_complete(consumer._add_gap(TP0, *gap))
        for offsets in acked:
            ack(consumer, offsets)
        results.append(commits(consumer, len(want)))
    assert results == [want, want]


def test_seek_forgets_gaps(loop: asyncio.AbstractEventLoop) -> None:
    """Reading restarts at the committed offsets: a gap noted before the seek is void."""
    consumer = make_consumer(WorkerFaustApp)

    async def committed() -> dict[TP, int]:
        return {TP0: 1000}

    consumer.seek_to_committed = committed  # type: ignore[method-assign]
    loop.run_until_complete(consumer._add_gap(TP0, 1001, 1024))

    loop.run_until_complete(consumer.perform_seek())

    assert not consumer._gap.get(TP0)
    assert consumer._read_offset[TP0] == 1000 and consumer._committed_offset[TP0] == 1000
