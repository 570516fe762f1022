"""State is written to the tables only once the rows it covers are delivered.

Each stored key state carries the offset of the last record applied to it, and a restarted
worker skips the records at or below that offset as already applied (their rows were sent
before the crash). That is only true if a state never becomes durable before the rows of
the records it covers. A table write is durable at once in the worker's local RocksDB
store (Faust's ``_set`` puts it before the changelog record is even sent), and a restart
from the same data directory reads it back; the changelog record can also reach the
broker before an earlier frame does (aiokafka sends one batch per partition per request).
Writing state and rows in the same step therefore lost rows when a SIGKILL came between
the state write and the frames' delivery (``test_pipeline_restart``, under load).

:class:`StagedState` keeps the order: at the commit's offset pick the worker sends its
open micro-batches and *stages* a snapshot of the changed state (encoded then, so it
covers exactly the records whose rows were just sent); right before the offsets are
committed, :meth:`StagedState.write_staged` waits until everything sent so far is
delivered, then writes the staged snapshots in order (the commit then flushes their
changelog records before the offsets). Pure asyncio: the worker passes the delivery
wait (Faust's producer flush) and the table write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Snapshot", "StagedState"]

logger = logging.getLogger(__name__)

PartitionValues = dict[int, dict[str, bytes]]
PartitionKeys = dict[int, set[str]]


@dataclass(slots=True)
class Snapshot:
    """Encoded changes of one moment: per partition, keys written and keys deleted."""

    histories: PartitionValues = field(default_factory=dict)
    states: PartitionValues = field(default_factory=dict)
    deleted_histories: PartitionKeys = field(default_factory=dict)
    deleted_states: PartitionKeys = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(
            any(parts.values())
            for parts in (self.histories, self.states, self.deleted_histories,
                          self.deleted_states)
        )  # fmt: skip


class StagedState:
    """Snapshots waiting for the delivery of the rows they cover (module docstring).

    ``deliver()`` returns once everything sent before the call is delivered;
    ``write(snapshot)`` writes one snapshot into the tables.
    """

    def __init__(
        self,
        deliver: Callable[[], Awaitable[None]],
        write: Callable[[Snapshot], Awaitable[None]],
    ) -> None:
        self._deliver = deliver
        self._write = write
        self._staged: deque[Snapshot] = deque()
        self._lock = asyncio.Lock()
        self.written = 0  # snapshots written so far

    @property
    def pending(self) -> int:
        """Snapshots staged and not yet written."""
        return len(self._staged)

    def stage(self, snapshot: Snapshot) -> None:
        """Call right after sending the rows of every record the snapshot covers."""
        if snapshot:
            self._staged.append(snapshot)

    async def write_staged(self) -> int:
        """Wait for the delivery of what was sent, then write the snapshots staged before.

        Returns how many were written. One writer at a time, in staging order: a later
        snapshot of a key never lands before an earlier one.
        """
        async with self._lock:
            n = len(self._staged)  # those staged now: their rows were sent before this call
            if not n:
                return 0
            await self._deliver()
            for _ in range(n):
                await self._write(self._staged[0])  # dropped once written (a failed write
                self._staged.popleft()  # is retried by the next call)
                self.written += 1
            return n
