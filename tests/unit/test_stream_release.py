"""A micro-batch goes to the pipeline in stream order, each record once the gate allows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from app.stream.join_gate import JoinGate
from app.stream.release import event_time, release_in_order


@dataclass
class _Msg:
    partition: int
    offset: int
    value: bytes


@dataclass
class _Event:
    message: _Msg


class _Gate:
    """Releases offsets below ``open_below``; a wait opens the gate up to the awaited one."""

    max_wait_s = 10.0

    def __init__(self, open_below: int) -> None:
        self.open_below = open_below
        self.waits: list[int] = []

    def ready(self, partition: int, offset: int, ts: float) -> bool:
        return offset < self.open_below

    async def wait(self, partition: int, offset: int, ts: float, within_s: float) -> None:
        self.waits.append(offset)
        self.open_below = offset + 1


def _events(n: int) -> list[_Event]:
    return [_Event(_Msg(0, i, orjson.dumps({"ts": 100.0 + i}))) for i in range(n)]


def _release(
    events: list[_Event], gate: Any, skip: frozenset[int] = frozenset(), coalesce_s: float = 0.0
) -> list[list[int]]:
    runs: list[list[int]] = []

    async def run(chunk: range) -> None:
        runs.append(list(chunk))

    asyncio.run(release_in_order(events, gate, "ts", run, skip, coalesce_s))
    return runs


def test_a_backlog_is_released_in_one_run() -> None:
    # Execute
    runs = _release(_events(5), _Gate(open_below=10))

    # Assert
    assert runs == [[0, 1, 2, 3, 4]]


def test_released_records_run_first_and_each_held_one_after_its_own_wait() -> None:
    # Prepare: offsets 0-2 are released, 3 and 4 held (just arrived)
    gate = _Gate(open_below=3)

    # Execute
    runs = _release(_events(5), gate)

    # Assert: in order, nothing skipped or repeated; held ones waited one at a time
    assert runs == [[0, 1, 2], [3], [4]]
    assert gate.waits == [3, 4]


def test_records_without_a_join_never_wait() -> None:
    # Prepare: a forwarded record and one without an event time among held ones
    events = _events(4)
    events[2].message.value = b"not json"
    gate = _Gate(open_below=1)

    # Execute
    runs = _release(events, gate, skip=frozenset({1}))

    # Assert: 1 (forwarded) and 2 (no time: the pipeline dead-letters it) pass with 0
    assert runs == [[0, 1, 2], [3]]
    assert gate.waits == [3]
    assert event_time(b"not json", "ts") is None and event_time(b'{"ts": true}', "ts") is None


def test_without_a_gate_everything_runs_at_once() -> None:
    # Execute
    runs = _release(_events(3), None)

    # Assert
    assert runs == [[0, 1, 2]]


class _FreeingGate(_Gate):
    """After a wait, every record comes free 10 ms later (records arrive steadily)."""

    async def wait(self, partition: int, offset: int, ts: float, within_s: float) -> None:
        await super().wait(partition, offset, ts, within_s)
        asyncio.get_running_loop().call_later(0.01, setattr, self, "open_below", 10**9)


def test_records_released_while_coalescing_run_together() -> None:
    # Prepare
    gate = _FreeingGate(open_below=3)

    # Execute
    runs = _release(_events(6), gate, coalesce_s=0.05)

    # Assert: after the wait for 3, the ones freed during the 50 ms run with it
    assert runs == [[0, 1, 2], [3, 4, 5]]
    assert gate.waits == [3]


def test_a_batch_waits_one_max_wait_in_all_not_one_per_held_record() -> None:
    # Prepare: a real gate whose customers partition never catches up (paused by a revoke)
    gate = JoinGate(lambda p: 10, lambda p: 0, lambda p: 10, hold_s=0.0, max_wait_s=0.1)

    # Execute
    runs = _release(_events(5), gate)

    # Assert: one timeout, then the rest of the batch joined at once (Faust waits for it)
    assert runs == [[0, 1, 2, 3, 4]]
    assert gate.counters.timeouts == 1 and gate.counters.held == 1
