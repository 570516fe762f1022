"""CommitPace: commits by count as well as time, and a cap on what a crash can repeat;
Committer: a stalled Faust commit is logged, cancelled and retried, never waited on forever."""

from __future__ import annotations

import asyncio
import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest

from app.stream.commit import Committer, CommitTimes
from app.stream.commit_pace import CommitPace
from app.stream.staged_state import Snapshot


def _unchanged_writer(stream_topic: str) -> SimpleNamespace:
    """A TableWriter with no changed state."""
    return SimpleNamespace(
        delete=lambda: None,
        chunks=lambda: iter(()),
        stream_topic=stream_topic,
        snapshot=lambda max_keys=None: Snapshot(),
        has_changes=False,
    )


def test_a_commit_is_due_after_every_events_not_before(loop: asyncio.AbstractEventLoop) -> None:
    pace = CommitPace(every=400, cap=800)
    pace.add(399)

    async def due_within(seconds: float) -> bool:
        t0 = loop.time()
        await pace.wait_due(seconds)
        return loop.time() - t0 < seconds * 0.9

    assert not loop.run_until_complete(due_within(0.05))  # the interval ran out
    pace.add(1)
    assert loop.run_until_complete(due_within(5.0))  # 400 waiting: at once
    pace.picked()
    assert not loop.run_until_complete(due_within(0.05))


def test_cap_counts_from_the_last_confirmed_commit() -> None:
    pace = CommitPace(every=400, cap=800)
    pace.add(500)
    mark = pace.picked()  # offsets of the first 500 picked, broker not answered yet
    pace.add(256)
    assert pace.unconfirmed == 756
    assert not pace.has_room(256)  # 1,012 would repeat if the worker died now
    pace.confirmed(mark)
    assert pace.unconfirmed == 256 and pace.has_room(256)
    pace.confirmed(0)  # an older confirmation never moves the mark back
    assert pace.unconfirmed == 256


def test_with_the_cap_at_one_interval_a_commit_in_flight_holds_the_next_interval() -> None:
    # the worker's setting (COMMIT_CAP_EVENTS == COMMIT_EVERY_EVENTS): one interval at most
    pace = CommitPace(every=800, cap=800)
    pace.add(768)
    mark = pace.picked()  # three batches of 256 picked, the commit in flight
    pace.add(32)
    assert not pace.has_room(1)  # 801 would repeat: wait for the broker's answer
    pace.confirmed(mark)
    assert pace.unconfirmed == 32 and pace.has_room(768) and not pace.has_room(769)


def test_a_batch_larger_than_the_cap_passes_right_after_a_commit() -> None:
    pace = CommitPace(every=10, cap=20)
    assert pace.has_room(50)  # nothing unconfirmed: waiting could never help
    with pytest.raises(ValueError):
        CommitPace(every=30, cap=20)


def test_a_rebalance_releases_a_waiting_batch(loop: asyncio.AbstractEventLoop) -> None:
    pace = CommitPace(every=4, cap=8)
    pace.add(8)
    rebalancing = False

    async def run() -> None:
        nonlocal rebalancing
        waiter = asyncio.ensure_future(pace.wait_room(4, lambda: rebalancing))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        rebalancing = True
        await asyncio.wait_for(waiter, 2.0)

    loop.run_until_complete(run())
    pace.reset()
    assert pace.unconfirmed == 0 and pace.waits == 1


def test_slow_commits_never_let_more_than_the_cap_go_unconfirmed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An agent far faster than the commits (catch-up on a loaded box): what a crash would
    repeat stays within the cap at every moment."""
    pace = CommitPace(every=400, cap=800)
    rng = random.Random(7)
    worst = 0

    async def agent() -> None:
        nonlocal worst
        for _ in range(400):
            n = rng.randint(1, 256)
            await pace.wait_room(n)
            pace.add(n)
            worst = max(worst, pace.unconfirmed)
            await asyncio.sleep(0)

    async def commits() -> None:
        while True:
            await pace.wait_due(0.01)
            mark = pace.picked()
            await asyncio.sleep(rng.uniform(0.0, 0.01))  # the broker's answer
            pace.confirmed(mark)

    async def run() -> None:
        committer = asyncio.ensure_future(commits())
        await agent()
        committer.cancel()

    loop.run_until_complete(run())
    assert 400 < worst <= 800
    assert pace.processed > 40_000


class _Consumer:
    """Faust's consumer as the committer sees it: the first commit takes 0.5 s."""

    def __init__(self) -> None:
        self.calls = 0
        self._committed_offset: dict[Any, int] = {}

    async def commit(self) -> bool:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.5)
        return True


async def _delivered() -> None:
    """The outbox with nothing open."""


def test_a_stalled_commit_is_logged_with_where_it_waits_and_awaited(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _Consumer()
    app = SimpleNamespace(consumer=consumer, rebalancing=False)
    handle = SimpleNamespace(
        inputs_open=asyncio.Event(), commit_ms=CommitTimes(), last_event={}, finished={},
        commit_watch=SimpleNamespace(observe=lambda *a: []),
    )  # fmt: skip
    writer = _unchanged_writer("t")
    committer = Committer(app, handle, writer, lambda: None, _delivered)  # type: ignore[arg-type]
    committer.stall_s = 0.2
    committer.pace.add(100)

    with caplog.at_level(logging.WARNING, logger="app.stream.commit"):
        loop.run_until_complete(asyncio.wait_for(committer.commit_in_steps(), 5))

    # not cancelled (Faust drops the picked offsets from its acked list before committing
    # them): waited for, reported twice, confirmed once done
    assert consumer.calls == 1 and committer.stalls == 2
    assert committer.pace.unconfirmed == 0 and handle.inputs_open.is_set()
    stall = [r.getMessage() for r in caplog.records if "not done after" in r.getMessage()]
    assert len(stall) == 2 and "in commit" in stall[0]  # the await chain down to the wait
    assert "where it waits" not in stall[1]


def test_positions_committed_by_another_commit_count_as_confirmed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Faust's commit returns False when another commit under way did the work, or when
    nothing is left: the inputs must not wait for a confirmation that never comes."""
    tp = ("bank.transactions", 0)
    consumer = SimpleNamespace(_committed_offset={})

    async def commit() -> bool:
        consumer._committed_offset.setdefault(tp, 500)  # the other commit did it (once)
        return False

    consumer.commit = commit
    app = SimpleNamespace(consumer=consumer, rebalancing=False)
    event = SimpleNamespace(message=SimpleNamespace(tp=tp, offset=499))
    handle = SimpleNamespace(
        inputs_open=asyncio.Event(), commit_ms=CommitTimes(),
        last_event={("bank.transactions", 0): event}, finished={},
        commit_watch=SimpleNamespace(observe=lambda *a: []),
    )  # fmt: skip
    writer = _unchanged_writer("bank.transactions")
    committer = Committer(app, handle, writer, lambda: None, _delivered)  # type: ignore[arg-type]
    committer.pace.add(700)
    loop.run_until_complete(asyncio.wait_for(committer.commit_in_steps(), 5))
    assert committer.pace.unconfirmed == 0
    consumer._committed_offset[tp] = 400  # not covered: stays unconfirmed
    committer.pace.add(10)
    loop.run_until_complete(asyncio.wait_for(committer.commit_in_steps(), 5))
    assert committer.pace.unconfirmed == 10
