"""The worker's side of a commit: write-behind table writes, the pre-commit hooks, timings.

A committed offset must mean "its row is in a delivered frame and its state is in the
changelog", and a state in a table (local store or changelog) must mean "the rows of the
records it covers are delivered" (a restart skips those records by offset,
:mod:`app.stream.staged_state`). :class:`CommitSensor` runs right before Faust picks the
offsets to commit (whichever path commits): it sends the open micro-batches and stages a
snapshot of the changed state; right before the offsets go to the broker, the consumer
calls :meth:`Committer.write_staged` (``WorkerFaustApp.before_offset_commit``), which waits
for the delivery of those rows and then writes the snapshot. :class:`TableWriter` writes
the processor's changed and deleted keys into the Faust tables, each write in the event
context of its partition so it lands in the changelog partition of that key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import faust
from faust.exceptions import PartitionsMismatch
from faust.sensors import Sensor
from faust.streams import _current_event

from app.stream.commit_pace import CommitPace
from app.stream.offsets import WATCHED_BY_CALLER
from app.stream.staged_state import Snapshot, StagedState
from app.stream.task_dump import task_stacks

__all__ = [
    "COMMIT_CAP_EVENTS",
    "COMMIT_EVERY_EVENTS",
    "COMMIT_STALL_S",
    "SNAPSHOT_CHUNK_KEYS",
    "STATE_WRITE_CHUNK",
    "CommitSensor",
    "CommitTimes",
    "Committer",
    "TableWriter",
    "consumer_loop",
]

logger = logging.getLogger(__name__)

STATE_WRITE_CHUNK = 16
"""Table writes between two yields to the event loop while the worker commits (64 held
the loop 10-92 ms on a loaded box, 64 of 49,349 commit steps of a chat bench leg over
10 ms; chatbot requests wait behind one chunk)."""

SNAPSHOT_CHUNK_KEYS = 64
"""Changed keys encoded per step of the event loop when a timed commit stages its state
(about 1 ms; all of a commit's keys in one step held the loop 7-12 ms in bench chat)."""

COMMIT_EVERY_EVENTS = 800
"""One commit interval by count: a commit starts once this many stream events were
processed since the last one (or once the commit interval passed), and a SIGKILL repeats
at most this many events (:data:`COMMIT_CAP_EVENTS`)."""

COMMIT_CAP_EVENTS = COMMIT_EVERY_EVENTS
"""Most stream events processed past the last confirmed commit: the input agents wait
before a batch that would exceed it. At most this many events repeat after a SIGKILL.
Equal to the count interval, so a commit in flight must be confirmed before the inputs
pass one interval past the commit before it (400 / 800 bounded two intervals; README:
"Why the repeat bound is one count interval")."""

COMMIT_STALL_S = 15.0
"""A Faust commit not done after this long is logged with every task's await chain (and
again every as long); normal: 0.2-0.8 s, 1-2 s on a loaded box."""


def _trust_new_changelog(app: faust.App, table: Any, source_topic: str) -> str | None:
    """Let a table write pass while its changelog's metadata is not in yet.

    Faust checks on a table's first write that the source topic and the changelog have the
    same partition count, reading the consumer's metadata snapshot. Right after the worker
    created the changelog topic that snapshot can say 0 partitions, and the check raised
    PartitionsMismatch at the first commit, which crashed a fresh worker. The changelog was
    declared with ``table.partitions``; while the broker's answer is unknown, compare with
    that instead and skip Faust's check for this write only (it runs on a later one).
    Returns the topic to remove from the verified set afterwards, or None.
    """
    verified = table._verified_source_topics_for_partitions
    if source_topic in verified or app.consumer.topic_partitions(table.changelog_topic_name):
        return None
    source_n = app.consumer.topic_partitions(source_topic)
    if source_n and table.partitions and source_n != table.partitions:
        raise PartitionsMismatch(
            f"{source_topic} has {source_n} partitions, table {table.name} {table.partitions}"
        )
    verified.add(source_topic)
    return source_topic


class CommitTimes:
    """The longest of each commit step since last asked: how long it held the loop, except
    ``outbox`` and ``offsets``, which await the broker while the loop runs on."""

    STEPS = ("frames", "outbox", "state chunk", "offsets", "inputs held")

    def __init__(self) -> None:
        self.commits = 0
        self.longest = dict.fromkeys(self.STEPS, 0.0)

    def add(self, **seconds: float) -> None:
        """Record one commit's step durations (keyword = step with spaces as _)."""
        self.commits += 1
        self.note(**seconds)

    def note(self, **seconds: float) -> None:
        """Record step durations of the commit under way (not counted as a commit)."""
        for key, value in seconds.items():
            step = key.replace("_", " ")
            self.longest[step] = max(self.longest[step], value)

    def take_summary(self) -> str:
        steps = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.longest.items())
        text = f"{self.commits} commits, longest {steps}"
        self.commits, self.longest = 0, dict.fromkeys(self.STEPS, 0.0)
        return text


class CommitSensor(Sensor):
    """Send open batches and stage the write-behind state just before Faust picks offsets.

    Faust picks the offsets to commit right after this hook, in the same step of the
    event loop, whichever path commits (the worker's timer, Faust's, a rebalance).
    """

    def __init__(self, flush: Any) -> None:
        super().__init__()
        self._flush = flush

    def on_commit_initiated(self, consumer: Any) -> Any:
        self._flush()
        return super().on_commit_initiated(consumer)


def consumer_loop(app: faust.App) -> Any:
    """The event loop of Faust's consumer thread, if it runs one."""
    return getattr(getattr(app.consumer, "_thread", None), "thread_loop", None)


class TableWriter:
    """Writes the processor's dirty and deleted keys into the two Faust tables.

    ``histories`` holds the joined table's versions (source: the table topic),
    ``states`` the stream's key states (source: the stream topic). ``last_event`` maps
    ``(topic, partition)`` to the latest event read there: its context routes a write to
    the changelog partition of that partition.
    """

    def __init__(self, app: faust.App, processor: Any, histories: Any, states: Any,
                 table_topic: str | None, stream_topic: str,
                 last_event: dict[tuple[str, int], Any]) -> None:  # fmt: skip
        self.app = app
        self.processor = processor
        self.histories = histories
        self.states = states
        self.table_topic = table_topic
        self.stream_topic = stream_topic
        self.last_event = last_event

    def snapshot(self, max_keys: int | None = None) -> Snapshot:
        """The processor's changed and deleted keys since the last snapshot, encoded now
        (at most ``max_keys`` changed ones: the rest are left for the next snapshot)."""
        histories, states = self.processor.take_dirty(max_keys)
        deleted_histories, deleted_states = self.processor.take_deleted()
        return Snapshot(histories, states, deleted_histories, deleted_states)

    @property
    def has_changes(self) -> bool:
        """Whether changed keys are left for a snapshot."""
        return bool(self.processor.has_dirty)

    def chunks(self, snapshot: Snapshot | None = None
               ) -> Iterator[tuple[Any, str, int, list[tuple[str, bytes]]]]:  # fmt: skip
        """Changed histories/states in chunks: (table, source topic, partition, entries).

        ``snapshot``: what to write (None: the processor's changes now).
        """
        if snapshot is None:
            histories, states = self.processor.take_dirty()
        else:
            histories, states = snapshot.histories, snapshot.states
        for (table, topic), dirty in (
            ((self.histories, self.table_topic or self.stream_topic), histories),
            ((self.states, self.stream_topic), states),
        ):
            for partition, entries in dirty.items():
                items = list(entries.items())
                for i in range(0, len(items), STATE_WRITE_CHUNK):
                    yield table, topic, partition, items[i : i + STATE_WRITE_CHUNK]

    async def write_snapshot(self, snapshot: Snapshot) -> None:
        """Deletions, then writes, yielding to the event loop between chunks."""
        self.delete(snapshot)
        for chunk in self.chunks(snapshot):
            self.write(*chunk)
            await asyncio.sleep(0)

    def _in_context(self, event: Any, table: Any) -> Any:
        token = _current_event.set(weakref.ref(event))
        trusted = _trust_new_changelog(self.app, table, event.message.topic)
        return token, trusted

    def _leave(self, table: Any, token: Any, trusted: str | None) -> None:
        _current_event.reset(token)
        if trusted:
            table._verified_source_topics_for_partitions.discard(trusted)

    def write(self, table: Any, topic: str, partition: int, items: list[Any]) -> None:
        """Write to a table in its partition's event context (the changelog partition)."""
        event = self.last_event.get((topic, partition))
        if event is None:
            return
        token, trusted = self._in_context(event, table)
        try:
            for key, value in items:
                table[key.encode()] = value
        finally:
            self._leave(table, token, trusted)

    def delete(self, snapshot: Snapshot | None = None) -> None:
        """Deleted keys leave both tables: a tombstone in each changelog.

        ``snapshot``: whose deletions (None: the processor's now).
        """
        tables: tuple[Any, Any] = (self.histories, self.states)
        topics = [t for t in (self.table_topic, self.stream_topic) if t is not None]
        both = (self.processor.take_deleted() if snapshot is None
                else (snapshot.deleted_histories, snapshot.deleted_states))  # fmt: skip
        for table, deleted in zip(tables, both, strict=True):
            for partition, keys in deleted.items():
                event = next((self.last_event[(t, partition)] for t in topics
                              if (t, partition) in self.last_event), None)  # fmt: skip
                if event is None:
                    continue
                token, trusted = self._in_context(event, table)
                try:
                    for key in keys:
                        with contextlib.suppress(KeyError):  # memory store: never written
                            del table[key.encode()]
                finally:
                    self._leave(table, token, trusted)


class Committer:
    """Send outputs, stage state, write it once the outputs are delivered, commit.

    ``flush_frames`` sends every open micro-batch; ``outbox_delivered`` returns once the
    enriched records and replies sent so far are delivered (it awaits, never holding the
    event loop: :mod:`app.stream.outbox`); ``handle`` is the worker's (inputs gate,
    timings, positions). The order (outputs delivered, then state written, then offsets)
    is the module's.
    """

    def __init__(
        self,
        app: faust.App,
        handle: Any,
        writer: TableWriter,
        flush_frames: Callable[[], None],
        outbox_delivered: Callable[[], Awaitable[None]],
        pace: CommitPace | None = None,
    ) -> None:
        self.app = app
        self.handle = handle
        self.writer = writer
        self._flush_frames = flush_frames
        self._outbox_delivered = outbox_delivered
        self.pace = pace if pace is not None else CommitPace(COMMIT_EVERY_EVENTS, COMMIT_CAP_EVENTS)
        self.staged = StagedState(self._deliver, self._write_timed)
        self.stall_s = COMMIT_STALL_S
        self.stalls = 0  # stall_s periods a commit was not done

    async def _deliver(self) -> None:
        """Every record sent so far delivered: frames and dead letters (Faust's producer),
        then the enriched records and replies (the outbox; the time is noted, not held)."""
        await asyncio.gather(self.app.producer.flush(), self._outbox_wait())

    async def _outbox_wait(self) -> None:
        t0 = time.perf_counter()
        await self._outbox_delivered()
        self.handle.commit_ms.note(outbox=time.perf_counter() - t0)

    async def _write_timed(self, snapshot: Snapshot) -> None:
        t0 = time.perf_counter()
        await self.writer.write_snapshot(snapshot)
        self.handle.commit_ms.note(state_chunk=time.perf_counter() - t0)

    def stage(self) -> None:
        """Send the open micro-batches, then stage the state they cover (any commit's
        sensor; synchronous, so nothing here waits for the broker)."""
        t0 = time.perf_counter()
        self._flush_frames()
        self.staged.stage(self.writer.snapshot())
        self.handle.commit_ms.note(frames=time.perf_counter() - t0)

    async def stage_in_steps(self) -> None:
        """:meth:`stage` spread over several steps of the event loop; only while no record
        can be processed (the inputs held), so every snapshot covers exactly the records
        whose rows were sent before it. Encoding a commit's ~800 changed keys in one step
        held the loop 7-12 ms, the longest wait of a chatbot reply (bench chat)."""
        t0 = time.perf_counter()
        self._flush_frames()
        longest = time.perf_counter() - t0
        while True:
            t1 = time.perf_counter()
            self.staged.stage(self.writer.snapshot(SNAPSHOT_CHUNK_KEYS))
            longest = max(longest, time.perf_counter() - t1)
            if not self.writer.has_changes:
                break
            await asyncio.sleep(0)  # chat requests in between
        self.handle.commit_ms.note(frames=longest)

    async def write_staged(self) -> None:
        """Right before the offsets go out: the staged state into the tables once its rows
        are delivered, and every enriched record sent before the offset pick delivered."""
        await self.staged.write_staged()
        await self._outbox_wait()  # covered above, unless no state had changed

    async def flush_everything(self) -> None:
        """Outputs delivered, then all state written and delivered (a revoke)."""
        self.stage()
        await self.staged.write_staged()
        await self.app.producer.flush()
        await self._outbox_wait()

    async def commit_in_steps(self) -> None:
        """Commit on the worker's timer; the input agents wait only for the offset pick.

        With the inputs held, the outputs are sent and the state staged in steps
        (:meth:`stage_in_steps`); then the commit's first step runs the sensor (which finds
        nothing new) and Faust picks the offsets: holding the inputs until then keeps the
        staged state and the pace's mark equal to what is picked. The state is written
        (after the outputs' delivery) and the offsets committed while the inputs run
        again: never wait for the broker (or for another commit under way) with the
        inputs held.
        """
        handle, app = self.handle, self.app
        handle.inputs_open.clear()
        try:
            t0 = time.perf_counter()
            await self.stage_in_steps()  # the sensor's stage at the pick then finds ~nothing
            token = WATCHED_BY_CALLER.set(True)  # _finish logs a stall (the task copies it)
            try:
                committing = asyncio.ensure_future(app.consumer.commit())
            finally:
                WATCHED_BY_CALLER.reset(token)
            await asyncio.sleep(0)  # the commit's first step: sensor, offsets
            mark, want = self.pace.picked(), self._stream_positions()
            handle.inputs_open.set()
            held = time.perf_counter() - t0
            if await self._finish(committing) or self._covered(want):
                self.pace.confirmed(mark)
            # staged by a commit that found no offset to commit (then Faust never calls
            # before_offset_commit): written now, the next commit delivers it
            await self.staged.write_staged()
            if not app.rebalancing:  # no commit can succeed while the group rebalances
                self.watch_commits()
            handle.commit_ms.add(offsets=time.perf_counter() - t0 - held, inputs_held=held)
        finally:
            handle.inputs_open.set()

    async def _finish(self, committing: asyncio.Future[bool]) -> bool:
        """Wait for Faust's commit; every ``stall_s`` it is not done, log where it waits.

        A commit once hung inside ``consumer.commit()`` with nothing logged. It is not
        cancelled: Faust removes the picked offsets from its acked list before it
        commits them, so a commit cancelled after the pick (e.g. waiting in the producer
        flush while the broker is down) left ``OffsetSafeConsumer._new_offset`` without
        the start of the next run, and no commit ever succeeded again (seen in the broker
        outage test). The first report carries every task's await chain.
        """
        waited = 0.0
        while True:
            done, _ = await asyncio.wait({committing}, timeout=self.stall_s)
            if done:
                return bool(committing.result())
            waited += self.stall_s
            self.stalls += 1
            where = ""
            if waited == self.stall_s:
                loops = [asyncio.get_running_loop(), consumer_loop(self.app)]
                where = "; where it waits:\n" + task_stacks([x for x in loops if x is not None])
            state = getattr(self.app.consumer, "commit_state", None)
            step = f": {state()}" if state is not None else ""
            logger.warning("offset commit not done after %.0f s%s%s", waited, step, where)

    def _stream_positions(self) -> dict[Any, int]:
        """Per stream partition, the position after its last processed event."""
        stream = self.writer.stream_topic
        events = self.handle.last_event.items()
        return {
            ev.message.tp: ev.message.offset + 1 for (topic, _), ev in events if topic == stream
        }

    def _covered(self, want: dict[Any, int]) -> bool:
        """Are these positions committed, whichever commit did it? A commit returns False
        when another one (Faust's own timer, the revoke handler's) was under way and
        committed them, or when nothing was left to commit: the pace must count those."""
        committed = cast(Any, self.app.consumer)._committed_offset
        return all((committed.get(tp) or 0) >= pos for tp, pos in want.items())

    def processed_positions(self) -> dict[Any, int]:
        return {ev.message.tp: ev.message.offset + 1 for ev in self.handle.last_event.values()}

    def finished_positions(self) -> dict[Any, int]:
        """Per input partition, the position after its last record Faust may commit.

        Faust acks (and so may commit) a micro-batch of the stream only once the agent is
        done with all of it, but :func:`~app.stream.release.release_in_order` runs its
        first records before the join gate releases the rest (up to ``JOIN_MAX_WAIT_S``
        later): positions of those first records are processed, not committable yet. A
        batch held over two commits made the watch report a trail that the next commit
        closed (test_pipeline_restart, 1 of 10 runs: 162 offsets, under one batch).
        The table's records are acked one by one, right after each is processed.
        """
        stream = self.writer.stream_topic
        out = {ev.message.tp: ev.message.offset + 1
               for (topic, _), ev in self.handle.last_event.items() if topic != stream}  # fmt: skip
        out.update(self.handle.finished)
        return out

    def watch_commits(self) -> None:
        """Log partitions whose commits fall behind what Faust may commit: acked records
        (app.stream.commit_watch); a commit that crawls or fails shows here."""
        committed = cast(Any, self.app.consumer)._committed_offset  # what Faust committed
        for trail in self.handle.commit_watch.observe(self.finished_positions(), committed):
            logger.warning("commit trails processing: %s", trail)
