"""A commit not done in time says which step it waits in, whichever path started it.

Faust's own consumer (the worker's ``OffsetSafeConsumer``, no broker): its commit runs
Faust's real steps; the app's ``before_offset_commit`` hook and the consumer thread's
commit stand in for a delivery and a broker that do not answer.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import Message

import app.stream.offsets as offsets
from app.stream.offsets import WATCHED_BY_CALLER, OffsetSafeConsumer, WorkerFaustApp

TOPIC = "bank.transactions"
TP0 = TP(TOPIC, 0)


def _consumer(hook: Any) -> OffsetSafeConsumer:
    app = WorkerFaustApp("commit-watch", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.topics._acking_topics.add(TOPIC)
    app.before_offset_commit = hook
    consumer = app.consumer
    assert isinstance(consumer, OffsetSafeConsumer)
    for offset in range(10):
        consumer.ack(Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP0))
    return consumer


async def _stuck() -> None:
    await asyncio.sleep(0.35)
    raise RuntimeError("delivery never came")


def _stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not done after" in r.getMessage()]


@pytest.fixture(autouse=True)
def _short_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offsets, "COMMIT_WATCH_S", 0.1)


def test_a_stalled_commit_is_logged_with_its_step(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _consumer(_stuck)
    with (
        caplog.at_level(logging.WARNING, logger="app.stream.offsets"),
        pytest.raises(RuntimeError, match="delivery never came"),
    ):
        loop.run_until_complete(asyncio.wait_for(consumer.commit(), 5))
    stalls = _stalls(caplog)
    assert 2 <= len(stalls) <= 4, stalls
    assert all("before_offset_commit (outputs' delivery" in s for s in stalls)
    assert consumer.stalled_commits == len(stalls) and consumer.commit_step == ""


def test_a_commit_waiting_for_another_says_what_that_one_waits_for(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def both() -> list[Any]:
        # built in the running loop: Faust's commit future belongs to the consumer's loop
        consumer = _consumer(_stuck)
        first = asyncio.ensure_future(consumer.commit())
        await asyncio.sleep(0)  # the first one is under way
        return await asyncio.gather(first, consumer.commit(), return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="app.stream.offsets"):
        loop.run_until_complete(asyncio.wait_for(both(), 5))
    followers = [s for s in _stalls(caplog) if "waiting for the commit under way" in s]
    assert followers and "which is before_offset_commit" in followers[0]


def test_the_broker_step_names_aiokafkas_coordinator_state(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def nothing() -> None:
        return None

    consumer = _consumer(nothing)
    consumer.app.producer.flush = nothing  # type: ignore[method-assign]
    coordinator = SimpleNamespace(coordinator_id=1, generation=7, member_id="m-1",
                                  _commit_lock=asyncio.Lock())  # fmt: skip

    async def commit(_offsets: Any) -> bool:
        await asyncio.sleep(0.25)  # aiokafka retrying: coordinator load in progress
        return True

    consumer._thread = SimpleNamespace(  # type: ignore[assignment]
        commit=commit, assignment=lambda: {TP0},
        _ensure_consumer=lambda: SimpleNamespace(_coordinator=coordinator),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="app.stream.offsets"):
        assert loop.run_until_complete(asyncio.wait_for(consumer.commit(), 5)) is True
    stalls = _stalls(caplog)
    assert stalls and "broker commit in the consumer thread" in stalls[0]
    assert "coordinator 1, generation 7, member m-1, commit lock free" in stalls[0]


def test_a_caller_that_watches_its_commit_gets_no_second_line(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _consumer(_stuck)
    steps: list[str] = []

    async def watched() -> None:
        token = WATCHED_BY_CALLER.set(True)
        try:
            committing = asyncio.ensure_future(consumer.commit())
        finally:
            WATCHED_BY_CALLER.reset(token)
        await asyncio.sleep(0.2)
        steps.append(consumer.commit_state())
        await asyncio.gather(committing, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="app.stream.offsets"):
        loop.run_until_complete(asyncio.wait_for(watched(), 5))
    assert _stalls(caplog) == [] and consumer.stalled_commits == 0
    assert steps == ["before_offset_commit (outputs' delivery, then the staged state)"]
