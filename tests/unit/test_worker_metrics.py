"""The worker's own health figures: loop lag, full-GC pauses, commit step times."""

from __future__ import annotations

import asyncio
import gc
import time

from app.stream.gc_pauses import GCPauses, collect_old_garbage
from app.stream.loop_lag import TICK_S, LoopLag
from app.stream.worker import CommitTimes


def test_loop_lag_reports_a_blocked_loop() -> None:
    lag = LoopLag()

    async def scenario() -> None:
        task = asyncio.ensure_future(lag.run())
        await asyncio.sleep(10 * TICK_S)
        time.sleep(0.08)  # block the loop: the tick wakes about 80 ms late
        await asyncio.sleep(2 * TICK_S)
        task.cancel()

    asyncio.run(scenario())
    summary = lag.take_summary()
    longest = float(summary.split("max ")[1].split(" ms")[0])
    assert longest >= 60.0, summary
    assert lag.take_summary() == "loop lag: no ticks"  # taking resets


def test_loop_lag_keeps_bounded_memory() -> None:
    lag = LoopLag(keep=8)
    for i in range(100):
        lag.record(i / 1000)
    assert "max 99.0 ms" in lag.take_summary()  # the newest 8 are kept


def test_gc_pauses_counts_full_collections_only() -> None:
    pauses = GCPauses()
    gc.callbacks.append(pauses)
    try:
        gc.collect(0)
        assert pauses.count == 0
        assert collect_old_garbage() >= 0.0
        assert pauses.count == 1
    finally:
        gc.callbacks.remove(pauses)
    assert pauses.take_summary().startswith("1 full GC")
    assert pauses.count == 0


def test_commit_times_keep_the_longest_step() -> None:
    times = CommitTimes()
    times.add(frames=0.001, outbox=0.002, state_chunk=0.010)
    times.add(frames=0.003, offsets=0.2, inputs_held=0.05)
    summary = times.take_summary()
    assert summary.startswith("2 commits")
    assert "frames 3.0 ms" in summary and "state chunk 10.0 ms" in summary
    assert "offsets 200.0 ms" in summary and "inputs held 50.0 ms" in summary
    assert times.take_summary().startswith("0 commits")
