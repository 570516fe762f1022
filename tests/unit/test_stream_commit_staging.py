"""A timed commit stages its state in steps: the same snapshots, the event loop let in.

The worker's Committer encodes a commit's changed keys ``SNAPSHOT_CHUNK_KEYS`` at a time
with the inputs held, yielding between chunks (chatbot replies waited behind one step of
all keys). What it stages must be exactly what one synchronous stage would, and the
micro-batches are sent before any of it (a staged state covers only sent rows).
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

from app.pipelines.fraud import pipeline as fraud
from app.stream.commit import SNAPSHOT_CHUNK_KEYS, Committer, CommitTimes, TableWriter
from app.stream.processor import StreamProcessor
from tests.unit.test_stream_processor_state import Tables, _fraud_events, _run


def _fed() -> StreamProcessor:
    processor = Tables().processor(fraud)
    _run(processor, _fraud_events(3_000), 0)
    return processor


def _committer(processor: StreamProcessor, calls: list[str]) -> Committer:
    writer = TableWriter(None, processor, None, None, None, "t", {})  # type: ignore[arg-type]
    take = writer.snapshot

    def snapshot(max_keys: int | None = None) -> Any:
        calls.append("snapshot")
        return take(max_keys)

    writer.snapshot = snapshot  # type: ignore[method-assign]
    handle = SimpleNamespace(commit_ms=CommitTimes())
    return Committer(None, handle, writer, lambda: calls.append("frames"),  # type: ignore[arg-type]
                     lambda: asyncio.sleep(0))  # fmt: skip


def _entries(snapshots: Any) -> dict[str, bytes]:
    return {k: v for s in snapshots for part in (s.histories, s.states)
            for entries in part.values() for k, v in entries.items()}  # fmt: skip


def test_state_staged_in_steps_is_the_state_staged_at_once_with_the_loop_let_in(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Prepare: two committers over processors fed the same records
    changed = sum(len(keys) for part in _fed().take_dirty() for keys in part.values())
    calls: list[str] = []
    stepped, at_once = _committer(_fed(), calls), _committer(_fed(), [])

    async def ticker() -> None:
        while True:
            calls.append("tick")
            await asyncio.sleep(0)

    async def stage() -> None:
        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        try:
            await stepped.stage_in_steps()
        finally:
            task.cancel()

    # Execute
    loop.run_until_complete(stage())
    at_once.stage()

    # Assert: frames first, one snapshot per chunk with the loop run between, same state
    steps = list(stepped.staged._staged)
    assert changed > 3 * SNAPSHOT_CHUNK_KEYS
    assert len(steps) == math.ceil(changed / SNAPSHOT_CHUNK_KEYS)
    assert calls.index("frames") < calls.index("snapshot")
    snapshots_and_ticks = "".join(c[0] for c in calls if c != "frames")
    assert snapshots_and_ticks.count("s") == len(steps) and "ss" not in snapshots_and_ticks
    assert _entries(steps) == _entries(at_once.staged._staged)
    assert not stepped.writer.has_changes
