"""Faust's offset tracking with the rebalance crawl fixed (faust-streaming 0.15.3, pinned).

The defect (read in ``faust/transport/consumer.py``, seen in the worker's logs):

- ``_drain_messages`` notes a *gap* when a record arrives more than one offset past the
  partition's read offset (``_add_gap``): Faust takes the offsets in between as never
  coming (compaction, transaction markers) and so as done.
- After a rebalance, ``perform_seek`` sets the read offsets back to the committed ones
  while records fetched before the seek are still being handed out. One of them (offset
  ``c + n``) makes a gap ``c + 1 .. c + n``; then the re-fetch from ``c`` delivers and
  acks those very offsets again.
- ``_new_offset`` merges gap offsets into the sorted ``_acked`` list with ``extend``, so
  every such offset is now in it twice. ``consecutive_numbers`` over ``[c, c, c+1, c+1,
  ...]`` yields runs of two, and each commit removes one run: the committed offset rises
  by ONE record per commit while processing is current, until the doubled stretch is
  used up (n commits; 24 in the run that proved it, the issue saw 10-72 s).

:class:`OffsetSafeConsumer` (the aiokafka driver's consumer) keeps the acked offsets
unique when a gap is merged, and forgets gaps whenever it seeks back to the committed
offsets (reading restarts there, so a gap noted before is about records that come again).
Everything else is Faust's code: the rule "commit up to the first offset not acked" holds.
A fetch that overlapped such a seek is dropped and fetched again (:meth:`_getmany`):
processed, a stale record ahead of the committed offset made Faust drop the records before
it as already read, and the worker lost rows in 2 of 2 runs of the rebalance test.
``tests/unit/test_stream_offsets.py`` runs Faust's own code to show the crawl on stock
behaviour: when that test fails, Faust fixed it and this module can go.

Every commit, whichever path starts it (the worker's timer, Faust's own timer, the
revoke handler's ``wait_empty``, shutdown), says which step it is in
(:attr:`OffsetSafeConsumer.commit_step`); one not done after :data:`COMMIT_WATCH_S` is
logged with that step (for the broker commit also aiokafka's coordinator, generation and
commit lock), and again every as long. None of Faust's or aiokafka's waits in a commit
has a bound of its own that short: another commit under way (waited for without limit),
the worker's delivery wait (as long as the broker is down), Faust's producer flush
(aiokafka expires a batch only after ``producer_request_timeout``, 1,200 s), the call into
the consumer thread, and aiokafka's ``commit_offsets``, which retries retriable errors
(coordinator unknown, load in progress, request timed out) without limit, logging them
at INFO only.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from faust.utils.functional import consecutive_numbers

__all__ = [
    "COMMIT_WATCH_S",
    "WATCHED_BY_CALLER",
    "OffsetSafeConsumer",
    "OffsetSafeTransport",
    "WorkerFaustApp",
]

logger = logging.getLogger(__name__)

COMMIT_WATCH_S = 15.0
"""A commit not done after this long is logged with the step it waits in (and again every
as long); normal: 0.2-0.8 s, 1-2 s on a loaded box."""

WATCHED_BY_CALLER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fedstream_commit_watched_by_caller", default=False
)
"""Set by a caller that watches its own commit (the worker's timer, app.stream.commit):
the consumer then only tracks the step, the caller logs it."""


class OffsetSafeConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer whose commits do not crawl after a rebalance."""

    dropped_stale = 0
    dropped_unhanded = 0

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's ``_new_offset`` with the acked offsets kept unique (see the module)."""
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            top = max(acked)
            skipped = [o for iv in sorted(gaps.overlap(0, top)) for o in range(iv.begin, iv.end)]
            if skipped:
                acked.extend(skipped)
                gaps.chop(0, max(skipped[-1], top + 1))
        acked[:] = sorted(set(acked))
        committed = self._committed_offset[tp]
        if committed and acked[0] - committed > 1:
            return None  # the next offset to commit was not acked yet
        batch = next(consecutive_numbers(acked))
        del acked[: len(batch)]
        self._acked_index[tp].difference_update(batch)
        return int(batch[-1]) + 1

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's gap (offsets taken as never coming), logged: on a topic without
        compaction it means records were skipped."""
        committed = self._committed_offset.get(tp)
        logger.warning("gap in %s[%d]: offsets %d-%d taken as done (committed %s, read %s)",
                       tp.topic, tp.partition, offset_from, offset_to - 1, committed,
                       self._read_offset.get(tp))  # fmt: skip
        await super()._add_gap(tp, offset_from, offset_to)

    _seek_events = 0  # perform_seek starts and ends so far
    _seeking = 0  # perform_seek calls under way

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        """Records of a fetch that overlapped a seek may be stale: drop them, seek back.

        Each partition goes back to its committed offset or to its first dropped record,
        whichever is lower (aiokafka's seek_to_committed leaves a partition without a
        committed offset where it was, so those records are fetched again from there).
        """
        events, seeking = self._seek_events, self._seeking
        records = await super()._getmany(active_partitions, timeout)
        if not records or not (seeking or events != self._seek_events):
            return records
        while self._seeking:  # let the seek under way set the committed offsets
            await asyncio.sleep(0.05)
        n, targets = 0, {}
        for tp, batch in records.items():
            if batch:
                n += len(batch)
                committed = self._committed_offset.get(tp)
                first = int(batch[0].offset)
                targets[tp] = first if committed is None else min(committed, first)
                await self._seek(tp, targets[tp])
        logger.warning("dropped %d records fetched across a seek; fetching again from %s", n,
                       {f"{tp.topic}[{tp.partition}]": o for tp, o in targets.items()})  # fmt: skip
        self.dropped_stale += n
        return {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch: Any = None  # (records, seek events, seeks) of the batch being handed out
        self._tp_seeks: dict[TP, int] = {}  # seeks per partition so far

    def _seek_counts(self) -> dict[TP, int]:
        return self._tp_seeks

    async def _seek(self, partition: TP, offset: int) -> None:
        counts = self._seek_counts()
        counts[partition] = counts.get(partition, 0) + 1
        await super()._seek(partition, offset)

    async def seek_wait(self, partitions: Any) -> None:
        """Faust's seek_wait (table recovery positions its changelogs with it), counted."""
        counts = self._seek_counts()
        for tp in partitions:
            counts[tp] = counts.get(tp, 0) + 1
        await super().seek_wait(partitions)

    async def _wait_next_records(self, timeout: float) -> Any:
        records, active = await super()._wait_next_records(timeout)
        self._batch = (records, self._seek_events, dict(self._seek_counts()))
        return records, active

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's getmany; fetched records it did not hand out are fetched again.

        Faust stops handing out a fetched batch when flow control stops (a rebalance
        starts) or the generation changes, and skips the records of a partition paused
        meanwhile (a table recovering); aiokafka's position is past them by then. Faust
        relies on a later ``perform_seek``, which goes to the committed offset: a
        partition not committed yet (the first seconds of a stream) stayed past them and
        those transactions were never processed, and a standby's changelog records were
        lost the same way. Seen in the rebalance test on a loaded box (see the README).
        """
        handed: dict[TP, int] = {}
        self._batch = None
        try:
            async for tp, message in super().getmany(timeout):
                handed[tp] = message.offset
                yield tp, message
        finally:
            batch, self._batch = self._batch, None
            if batch and batch[0]:
                records, seek_events, seeks = batch
                await self._refetch_unhanded(records, seek_events, seeks, handed)

    async def _refetch_unhanded(
        self, records: Any, seek_events: int, seeks: dict[TP, int], handed: dict[TP, int]
    ) -> None:
        """Seek each partition back to the first record of ``records`` not handed out.

        A partition positioned by another seek since the fetch (table recovery) is left
        alone; after a ``perform_seek`` the committed offset wins if it is lower.
        """
        assigned = self.assignment()
        seeked = self._seeking or seek_events != self._seek_events
        counts = self._seek_counts()
        ranges: dict[TP, tuple[int, int, int]] = {}
        n = 0
        for tp, batch in records.items():
            last = handed.get(tp)
            left = [r for r in batch if last is None or r.offset > last]
            if not left or tp not in assigned or counts.get(tp, 0) != seeks.get(tp, 0):
                continue
            target = int(left[0].offset)
            committed = self._committed_offset.get(tp)
            if seeked and committed is not None:
                target = min(target, committed)
            n += len(left)
            ranges[tp] = (int(left[0].offset), int(left[-1].offset), target)
            await self._seek(tp, target)
        if ranges:
            self.dropped_unhanded += n
            active = self._active_partitions or set()
            where = {f"{tp.topic}[{tp.partition}]{'' if tp in active else ' paused'}":
                     f"{a}-{b} from {t}" for tp, (a, b, t) in ranges.items()}  # fmt: skip
            flow = "active" if self.flow_active else "stopped"
            logger.warning("Faust left %d fetched records unhanded (flow %s); fetching again: %s",
                           n, flow, where)  # fmt: skip

    commit_step = ""  # what the commit under way waits for ("" when none is)
    stalled_commits = 0  # COMMIT_WATCH_S periods a commit was not done (watched here)

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Faust's commit, its steps tracked and, unless the caller watches it, a stall
        logged (see the module docstring)."""
        follower = self._commit_fut is not None  # Faust waits for the one under way
        watch = None
        if not WATCHED_BY_CALLER.get():
            watch = asyncio.ensure_future(self._watch_commit(follower))
        if not follower:
            self.commit_step = "picking offsets (sensor: frames sent, state staged)"
        try:
            return bool(await super().commit(topics, start_new_transaction))
        finally:
            if watch is not None:
                watch.cancel()
            if not follower:
                self.commit_step = ""

    def commit_state(self, follower: bool = False) -> str:
        """The step the commit under way waits in, for a log line."""
        step = self.commit_step or "between steps"
        if follower:
            step = f"waiting for the commit under way, which is {step}"
        if self.commit_step.startswith("broker commit"):
            step += f" ({self._coordinator_state()})"
        return step

    def _coordinator_state(self) -> str:
        """aiokafka's group coordinator as the consumer thread sees it (read, not locked)."""
        try:
            coordinator = self._thread._ensure_consumer()._coordinator
            lock = coordinator._commit_lock.locked()
            return (f"coordinator {coordinator.coordinator_id}, generation "
                    f"{coordinator.generation}, member {coordinator.member_id or '-'}, "
                    f"commit lock {'held' if lock else 'free'}, "
                    f"rebalancing {bool(self.app.rebalancing)}")  # fmt: skip
        except Exception as exc:  # only for a log line: never fail the commit over it
            return f"coordinator unknown: {type(exc).__name__}"

    async def _watch_commit(self, follower: bool) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(COMMIT_WATCH_S)
            waited += COMMIT_WATCH_S
            self.stalled_commits += 1
            logger.warning("offset commit not done after %.0f s: %s", waited,
                           self.commit_state(follower))  # fmt: skip

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Faust's offset commit, after the app's ``before_offset_commit`` (the worker writes
        its staged state there, once the rows it covers are delivered: app.stream.commit).
        Faust then flushes its producer (those changelog records) and commits."""
        hook = getattr(self.app, "before_offset_commit", None)
        if hook is not None:
            self.commit_step = "before_offset_commit (outputs' delivery, then the staged state)"
            await hook()
        self.commit_step = "Faust's producer flush (frames, changelogs)"
        return bool(await super()._commit_offsets(offsets, start_new_transaction))

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """The broker commit, run by the consumer thread (aiokafka's commit_offsets)."""
        self.commit_step = "broker commit in the consumer thread"
        try:
            return bool(await super()._commit(offsets))
        finally:
            self.commit_step = "tables' on_commit"

    async def perform_seek(self) -> None:
        """Seek to the committed offsets; gaps noted before are about records read again."""
        self._seek_events += 1
        self._seeking += 1
        self._gap.clear()
        try:
            await super().perform_seek()
        finally:
            self._seeking -= 1
            self._seek_events += 1
            self._gap.clear()


class OffsetSafeTransport(aiokafka_driver.Transport):
    """The aiokafka transport with :class:`OffsetSafeConsumer`."""

    Consumer = OffsetSafeConsumer


class WorkerFaustApp(faust.App):
    """``faust.App`` whose consumer transport is :class:`OffsetSafeTransport`.

    ``before_offset_commit``: awaited by the consumer right before it flushes the producer
    and commits offsets (whichever path commits), after the offsets were picked.
    """

    before_offset_commit: Callable[[], Awaitable[None]] | None = None

    def _new_transport(self) -> Any:
        return OffsetSafeTransport(self.conf.broker_consumer, self)
