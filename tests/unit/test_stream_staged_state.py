"""A staged state is written only after the rows it covers are delivered (pure asyncio).

The worker's restart skips records a stored state already covers, so a state that is
durable before its rows are delivered loses those rows on a crash in between. These tests
force the interleavings: a delivery that takes long, snapshots staged while another write
waits, and a crash at every step.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from app.stream.staged_state import Snapshot, StagedState


class _Broker:
    """Sent rows become delivered only when ``deliver`` runs; tables record writes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sent: list[int] = []  # record offsets whose rows were sent
        self.delivered: set[int] = set()
        self.tables: dict[str, int] = {}  # key -> offset of its last applied record
        self.violations: list[str] = []

    async def deliver(self) -> None:
        upto = len(self.sent)  # what was sent before the flush started
        await asyncio.sleep(self.rng.uniform(0, 0.003))
        self.delivered.update(self.sent[:upto])

    async def write(self, snapshot: Snapshot) -> None:
        for part in snapshot.states.values():
            for key, value in part.items():
                offset = int(value)
                # the stored state covers records up to ``offset``: their rows must be out
                undelivered = [o for o in range(offset + 1) if o in self.sent
                               and o not in self.delivered and o % 3 == int(key)]  # fmt: skip
                if undelivered:
                    self.violations.append(f"{key}@{offset} before rows {undelivered}")
                self.tables[key] = offset
                await asyncio.sleep(0)


def _snapshot(last: dict[str, int]) -> Snapshot:
    return Snapshot(states={0: {k: str(v).encode() for k, v in last.items()}})


@pytest.mark.parametrize("seed", range(5))
def test_no_state_is_written_before_its_rows_are_delivered(seed: int) -> None:
    rng = random.Random(seed)
    broker = _Broker(rng)
    staged = StagedState(broker.deliver, broker.write)

    async def worker() -> None:
        last: dict[str, int] = {}
        commits: list[asyncio.Task[int]] = []
        for offset in range(600):
            key = str(offset % 3)
            last[key] = offset
            broker.sent.append(offset)  # the row goes out with the next frame
            if rng.random() < 0.05:  # a commit's sensor: rows sent, state staged
                staged.stage(_snapshot(last))
                last = {}
                commits.append(asyncio.ensure_future(staged.write_staged()))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        staged.stage(_snapshot(last))
        commits.append(asyncio.ensure_future(staged.write_staged()))
        await asyncio.gather(*commits)

    asyncio.run(worker())
    assert broker.violations == []
    assert staged.pending == 0 and staged.written > 5
    assert broker.tables == {"0": 597, "1": 598, "2": 599}  # every snapshot, in order


def test_a_write_waits_for_a_slow_delivery_and_later_snapshots_wait_for_it() -> None:
    order: list[str] = []
    release = asyncio.Event()

    async def deliver() -> None:
        order.append("deliver")
        await release.wait()
        order.append("delivered")

    async def write(snapshot: Snapshot) -> None:
        order.append(f"write {snapshot.states[0]['k'].decode()}")

    async def run() -> None:
        staged = StagedState(deliver, write)
        staged.stage(_snapshot({"k": 1}))
        first = asyncio.ensure_future(staged.write_staged())
        await asyncio.sleep(0.01)
        staged.stage(_snapshot({"k": 2}))  # staged while the first delivery waits
        second = asyncio.ensure_future(staged.write_staged())
        await asyncio.sleep(0.01)
        assert order == ["deliver"]  # nothing written while the rows are on their way
        release.set()
        assert await first == 1 and await second == 1

    asyncio.run(run())
    # the second snapshot waited for its own delivery (its rows were sent later)
    assert order == ["deliver", "delivered", "write 1", "deliver", "delivered", "write 2"]


def test_a_failed_write_keeps_the_snapshot_for_the_next_call() -> None:
    calls: list[int] = []

    async def deliver() -> None:
        return None

    async def write(snapshot: Snapshot) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("producer not running")

    async def run() -> None:
        staged = StagedState(deliver, write)
        staged.stage(_snapshot({"k": 1}))
        staged.stage(Snapshot())  # nothing changed: not staged
        assert staged.pending == 1
        with pytest.raises(RuntimeError):
            await staged.write_staged()
        assert staged.pending == 1
        assert await staged.write_staged() == 1 and staged.pending == 0

    asyncio.run(run())
