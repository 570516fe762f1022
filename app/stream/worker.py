"""The Faust worker: thin agents that feed raw records to a StreamProcessor.

Agents
------
- ``bank.customers``  -> profile versions (table ``profiles``)
- ``bank.transactions`` -> join with the profile as of its event time and the windows
  (table ``windows``), score, micro-batch per silo -> ``silo.<id>.batches``; a
  :class:`JoinGate` holds a transaction until the profiles up to its time were read
- invalid input -> ``dlq.<input topic>`` with the reason and original bytes (bounded:
  ``app.features.dead_letter``); a tombstone on ``bank.customers`` deletes the customer.
  An unexpected error on one record dead-letters that record too ("internal error"):
  no input stops an agent or loses a record.

Delivery: a :class:`CommitSensor` runs right before Faust commits offsets. It flushes every
open micro-batch and writes the changed table entries (one write per changed customer per
commit, not per event), and Faust then flushes its producer before committing. So a
committed offset always means "its row is in a delivered frame and its state is in the
changelog": a crash loses nothing. Frames sent between two commits (a
batch that filled up) are sent again after a crash, so SIGKILL can duplicate rows of at most
one commit interval; SIGTERM duplicates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from faust.exceptions import PartitionsMismatch
from faust.sensors import Sensor
from faust.streams import _current_event

from app.features.event_time import TimePolicy
from app.features.records import Transaction
from app.features.spec import FeatureSpec
from app.features.validation import InvalidRecord, parse_transaction
from app.kafka.security import faust_settings
from app.ops.worker_metrics import SAMPLE_INTERVAL_S, WorkerMetrics
from app.settings import Settings
from app.stream.commit_watch import CommitWatch
from app.stream.gc_pauses import FULL_GC_INTERVAL_S, collect_old_garbage, gc_pauses
from app.stream.join_gate import JoinGate, join_gate
from app.stream.loop_agents import attach_loop
from app.stream.loop_lag import LoopLag
from app.stream.offsets import WorkerFaustApp
from app.stream.periodic import every
from app.stream.processor import StreamProcessor, dead_letter, dead_letter_key
from app.stream.repartition import Repartitioner
from app.stream.task_dump import install_task_dump
from topics import (
    CUSTOMERS,
    FEATURE_SPECS,
    TRANSACTIONS,
    WORKER_APP_ID,
    dlq,
    namespaced,
    silo_batches,
)

__all__ = ["WorkerHandle", "create_worker_app"]

logger = logging.getLogger(__name__)


PRODUCER_BUFFER_MESSAGES = 50_000
"""Records Faust's producer buffer may hold before the streams wait for it (Faust: 100)."""

COMMIT_INTERVAL_S = 1.0
"""How often the worker flushes its write-behind and commits offsets (its own timer)."""

FAUST_COMMIT_FALLBACK_S = 30.0
"""Faust's own commit timer, left as a fallback; its pre-commit flush runs in one piece."""

STATE_WRITE_CHUNK = 64
"""Table writes between two yields to the event loop while the worker commits."""

YIELD_EVERY_EVENTS = 8
"""Transactions the agent handles before it yields to the event loop. Events already in
Faust's queue are handed over without a yield, so a fetched burst of hundreds would run
back to back while a chatbot request waits behind it."""

SESSION_TIMEOUT_S = 10.0
"""Consumer group session timeout of a worker (heartbeats every 3 s)."""

JOIN_HOLD_S = 0.5
"""How long a transaction waits on the broker for profile updates sent before it (see
``app.stream.join_gate``); also the least latency of a row when profiles are quiet."""

JOIN_MAX_WAIT_S = 10.0
"""Longest wait for a customers partition that makes no progress (then join anyway)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    """The longest of each commit step since last asked (how long it held the loop)."""

    STEPS = ("frames", "outbox", "state chunk", "offsets", "inputs held")

    def __init__(self) -> None:
        self.commits = 0
        self.longest = dict.fromkeys(self.STEPS, 0.0)

    def add(self, **seconds: float) -> None:
        """Record one commit's step durations (keyword = step with spaces as _)."""
        self.commits += 1
        for key, value in seconds.items():
            step = key.replace("_", " ")
            self.longest[step] = max(self.longest[step], value)

    def take_summary(self) -> str:
        steps = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.longest.items())
        text = f"{self.commits} commits, longest {steps}"
        self.commits, self.longest = 0, dict.fromkeys(self.STEPS, 0.0)
        return text


class WorkerHandle:
    """The Faust app plus the processor and the objects the agents share."""

    def __init__(self, app: faust.App, processor: StreamProcessor) -> None:
        self.app = app
        self.processor = processor
        self.last_event: dict[tuple[str, int], Any] = {}
        self.loop: Any = None  # app.stream.loop.StreamLoop, set by create_worker_app
        self.commit_ms = CommitTimes()
        self.loop_lag = LoopLag()
        self.commit_watch = CommitWatch()
        self.metrics = WorkerMetrics([])  # Prometheus hooks (app.ops.worker_metrics)
        self.inputs_open = asyncio.Event()  # cleared while commit_in_steps runs
        self.inputs_open.set()
        self.gate: JoinGate | None = None  # set by create_worker_app


class CommitSensor(Sensor):
    """Flush batches and write-behind state just before Faust commits offsets.

    Faust picks the offsets to commit right after this hook, in the same step of the
    event loop, whichever path commits (the worker's timer, Faust's, a rebalance).
    """

    def __init__(self, flush: Any) -> None:
        super().__init__()
        self._flush = flush

    def on_commit_initiated(self, consumer: Any) -> Any:
        self._flush()
        return super().on_commit_initiated(consumer)


def _consumer_loop(app: faust.App) -> Any:
    """The event loop of Faust's consumer thread, if it runs one."""
    return getattr(getattr(app.consumer, "_thread", None), "thread_loop", None)


def create_worker_app(
    settings: Settings,
    spec: FeatureSpec,
    store: str = "rocksdb://",
    worker_id: str = "0",
    follow_models: bool = True,
) -> WorkerHandle:
    """Build the Faust app of a stream worker (``fedstream worker`` runs it)."""
    data_dir = Path(settings.data_dir) / "worker" / worker_id
    data_dir.mkdir(parents=True, exist_ok=True)
    ns = settings.namespace
    app = WorkerFaustApp(  # Faust's app with its offset tracking fixed (app.stream.offsets)
        namespaced(WORKER_APP_ID, ns),
        broker=f"kafka://{settings.bootstrap}",
        store=store,
        datadir=str(data_dir),
        topic_partitions=settings.input_partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        broker_commit_every=10_000,
        # The worker commits on its own timer (commit_in_steps below); Faust's is a fallback.
        broker_commit_interval=FAUST_COMMIT_FALLBACK_S,
        producer_linger_ms=5,
        producer_max_request_size=16 * 1024 * 1024,
        stream_buffer_maxsize=65536,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move on after this long (Faust's default is 60 s;
        # a restarted worker waited that long for its own old group member to expire).
        broker_session_timeout=SESSION_TIMEOUT_S,
        **faust_settings(),  # SASL_SSL as the process's principal (app.kafka.security)
    )
    # Faust stalls every stream (0.1 s waits) once more than 100 records wait in its producer
    # buffer; the per-commit write-behind queues one record per changed customer at once.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    profiles_table = app.Table("profiles", default=None, key_type=bytes, value_type=bytes,
                               partitions=settings.input_partitions)  # fmt: skip
    windows_table = app.Table("windows", default=None, key_type=bytes, value_type=bytes,
                              partitions=settings.input_partitions)  # fmt: skip

    def load(table: Any) -> Any:
        def read(customer_id: str) -> bytes | None:
            value = table.get(customer_id.encode())
            return None if value is None else bytes(value)

        return read

    processor = StreamProcessor(
        spec, settings.silo_ids, settings.batch_rows, settings.batch_ms,
        load_profile=load(profiles_table), load_state=load(windows_table),
        time_policy=TimePolicy(settings.event_max_ahead_s, settings.event_max_back_s),
    )  # fmt: skip
    handle = WorkerHandle(app, processor)
    # model follower, features.enriched, chatbot agent (app.stream.loop)
    loop = handle.loop = attach_loop(app, settings, spec, processor, follow_models)
    customers_name = namespaced(CUSTOMERS, ns)
    customers = app.topic(customers_name, key_serializer="raw", value_serializer="raw")
    transactions_name = namespaced(TRANSACTIONS, ns)
    gate = handle.gate = join_gate(app, customers_name, transactions_name, JOIN_HOLD_S,
                                   JOIN_MAX_WAIT_S)  # fmt: skip
    transactions = app.topic(transactions_name, key_serializer="raw", value_serializer="raw")
    handle.metrics = WorkerMetrics([namespaced(CUSTOMERS, ns), transactions_name])
    # records on a partition their key does not hash to (app.stream.repartition)
    inputs = {namespaced(CUSTOMERS, ns): customers, transactions_name: transactions}
    repartition = Repartitioner(settings.input_partitions, inputs)
    silo_topics = {s: app.topic(namespaced(silo_batches(s), ns), value_serializer="raw")
                   for s in settings.silo_ids}  # fmt: skip
    # keyed by the input topic's name as the messages carry it (namespaced)
    dlq_topics = {namespaced(t, ns): app.topic(namespaced(dlq(t), ns), key_serializer="raw",
                                               value_serializer="raw")
                  for t in (CUSTOMERS, TRANSACTIONS)}  # fmt: skip

    def send_frames(frames: list[tuple[int, bytes]]) -> None:
        for silo, frame in frames:
            silo_topics[silo].send_soon(key=str(silo).encode(), value=frame)

    def send_dead_letter(event: Any, reason: str) -> None:
        msg = event.message
        handle.metrics.dead_letter(msg.topic, reason)
        processor.counters.invalid += 1
        logger.debug("dead letter from %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
        value = dead_letter(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        dlq_topics[msg.topic].send_soon(key=dead_letter_key(msg.key), value=value)

    def internal_error(event: Any, exc: Exception) -> None:
        """A bug met on one record: log it, dead-letter the record, keep serving."""
        msg = event.message
        logger.exception("record %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
        send_dead_letter(event, f"internal error: {type(exc).__name__}: {exc}"[:500])

    # The table writes go through Faust (not straight to the changelogs with librdkafka,
    # which was 5x faster but left commits stuck after a SIGKILL restart; see the README).
    def dirty_chunks() -> Iterator[tuple[Any, str, int, list[tuple[str, bytes]]]]:
        """Changed profiles/states in chunks: (table, source topic, partition, entries)."""
        profiles, states = processor.take_dirty()
        for (table, topic), dirty in (
            ((profiles_table, CUSTOMERS), profiles),
            ((windows_table, TRANSACTIONS), states),
        ):
            for partition, entries in dirty.items():
                items = list(entries.items())
                for i in range(0, len(items), STATE_WRITE_CHUNK):
                    yield table, topic, partition, items[i : i + STATE_WRITE_CHUNK]

    def write_entries(table: Any, topic: str, partition: int, items: list[Any]) -> None:
        """Write to a table in its partition's event context (the changelog partition)."""
        event = handle.last_event.get((topic, partition))
        if event is None:
            return
        token = _current_event.set(weakref.ref(event))
        trusted = _trust_new_changelog(app, table, event.message.topic)
        try:
            for cid, value in items:
                table[cid.encode()] = value
        finally:
            _current_event.reset(token)
            if trusted:
                table._verified_source_topics_for_partitions.discard(trusted)

    def flush_outputs() -> tuple[float, float]:
        """Open micro-batches, then the enriched/reply outbox; returns both durations (s)."""
        t0 = time.perf_counter()
        send_frames(processor.flush_all(_now_ms()))
        t1 = time.perf_counter()
        loop.flush()
        return t1 - t0, time.perf_counter() - t1

    def delete_entries() -> None:
        """Deleted customers leave both tables: a tombstone in each changelog."""
        tables: tuple[Any, Any] = (profiles_table, windows_table)
        for table, deleted in zip(tables, processor.take_deleted(), strict=True):
            for partition, ids in deleted.items():
                event = handle.last_event.get((CUSTOMERS, partition)) or handle.last_event.get(
                    (TRANSACTIONS, partition)
                )
                if event is None:
                    continue
                token = _current_event.set(weakref.ref(event))
                trusted = _trust_new_changelog(app, table, event.message.topic)
                try:
                    for cid in ids:
                        with contextlib.suppress(KeyError):  # memory store: never written
                            del table[cid.encode()]
                finally:
                    _current_event.reset(token)
                    if trusted:
                        table._verified_source_topics_for_partitions.discard(trusted)

    def flush_everything() -> None:
        """Outputs, then state: all in one piece (any commit's sensor, rebalance)."""
        frames_s, outbox_s = flush_outputs()
        t0 = time.perf_counter()
        delete_entries()
        for chunk in dirty_chunks():
            write_entries(*chunk)
        handle.commit_ms.add(frames=frames_s, outbox=outbox_s, state_chunk=time.perf_counter() - t0)

    @every(app, COMMIT_INTERVAL_S)  # the interval between commits (app.stream.periodic)
    async def commit() -> None:
        t0 = time.perf_counter()
        await commit_in_steps()
        handle.metrics.committed(time.perf_counter() - t0)

    async def commit_in_steps() -> None:
        """Flush and commit while the input agents wait, yielding between table chunks.

        Same order and content as :func:`flush_everything`, but chatbot requests are
        answered between chunks instead of waiting for hundreds of table writes. The
        input agents hold their next event until Faust has picked the offsets to commit,
        so what is committed is what was written; they do not wait for the broker to
        confirm the commit. Whatever path commits (this one, Faust's fallback timer, a
        rebalance), the sensor's flush runs right before the offsets are picked, so the
        holding is an optimisation, never needed for correctness.
        """
        handle.inputs_open.clear()
        try:
            t0 = time.perf_counter()
            frames_s, outbox_s = flush_outputs()
            delete_entries()
            state_s = 0.0
            for chunk in dirty_chunks():
                t = time.perf_counter()
                write_entries(*chunk)
                state_s = max(state_s, time.perf_counter() - t)
                await asyncio.sleep(0)
            t3 = time.perf_counter()
            committing = asyncio.ensure_future(app.consumer.commit())
            await asyncio.sleep(0)  # the commit's first step: sensor, offsets
            # Never wait for the broker (or for another commit under way) with the inputs
            # held: an offset pick that comes later runs the sensor's flush anyway.
            handle.inputs_open.set()
            held = time.perf_counter() - t0
            await committing
            if not app.rebalancing:  # no commit can succeed while the group rebalances
                watch_commits()
            handle.commit_ms.add(
                frames=frames_s, outbox=outbox_s, state_chunk=state_s,
                offsets=time.perf_counter() - t3, inputs_held=held,
            )  # fmt: skip
        finally:
            handle.inputs_open.set()

    app.sensors.add(CommitSensor(flush_everything))

    def processed_positions() -> dict[Any, int]:
        return {ev.message.tp: ev.message.offset + 1 for ev in handle.last_event.values()}

    def watch_commits() -> None:
        """Log partitions whose commits fall behind processing (app.stream.commit_watch)."""
        committed = cast(Any, app.consumer)._committed_offset  # what Faust committed
        for trail in handle.commit_watch.observe(processed_positions(), committed):
            logger.warning("commit trails processing: %s", trail)

    @app.agent(customers)
    async def on_customers(stream: Any) -> None:
        async for event in stream.events():
            if not handle.inputs_open.is_set():
                await handle.inputs_open.wait()  # a commit is under way
            partition = event.message.partition
            handle.last_event[(CUSTOMERS, partition)] = event
            handle.metrics.event(event.message.topic)
            if repartition.forward_if_misplaced(event):
                gate.customer_read(partition, event.message.offset, None)  # read, moved on
                continue
            ts = None
            try:
                if event.value is None:  # tombstone: the bank deletes the customer
                    loop.forget_customer(processor.delete_customer(event.key, partition))
                else:
                    ts = processor.on_customer(event.value, event.key, partition, _now_ms()).ts
            except InvalidRecord as exc:
                send_dead_letter(event, exc.reason)
            except Exception as exc:  # a bug on one record must not stop the agent
                internal_error(event, exc)
            gate.customer_read(partition, event.message.offset, ts)

    @app.agent(transactions)
    async def on_transactions(stream: Any) -> None:
        seen = 0
        async for event in stream.events():
            seen += 1
            if seen % YIELD_EVERY_EVENTS == 0:
                await asyncio.sleep(0)  # let a waiting chatbot request in (see constant)
            msg = event.message
            txn: Transaction | None = None
            with contextlib.suppress(Exception):  # on_transaction dead-letters it below
                txn = parse_transaction(event.value)
            if txn is not None and not gate.ready(msg.partition, msg.offset, txn.ts):
                await gate.wait(msg.partition, msg.offset, txn.ts)
            if not handle.inputs_open.is_set():
                await handle.inputs_open.wait()  # a commit is under way
            handle.last_event[(TRANSACTIONS, msg.partition)] = event
            handle.metrics.event(msg.topic)
            if repartition.forward_if_misplaced(event):
                continue
            now_ms = _now_ms()
            swapped = loop.sync_model(now_ms)  # a new global model: swap between events
            if swapped:
                send_frames(swapped)
            try:
                joined = processor.on_transaction(event.value, event.key, msg.partition,
                                                  msg.offset, now_ms, txn)  # fmt: skip
                if joined is None:
                    continue
                if joined.frames:
                    send_frames(joined.frames)
                loop.on_joined(joined, msg.timestamp and int(msg.timestamp * 1000))
                handle.metrics.enriched(msg.timestamp)
            except InvalidRecord as exc:
                send_dead_letter(event, exc.reason)
            except Exception as exc:  # a bug on one record must not stop the agent
                internal_error(event, exc)

    @every(app, 0.2)
    async def flush_due_batches() -> None:
        send_frames(processor.flush_due(_now_ms()))

    @app.timer(interval=SAMPLE_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def sample_metrics() -> None:
        model = loop.model
        handle.metrics.sample(app.consumer, processed_positions(), model.round if model else None)

    spec_topic = app.topic(namespaced(FEATURE_SPECS, ns), key_serializer="raw",
                           value_serializer="raw")  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def publish_spec() -> None:
        """Names, order and version of the rows, for ``fl up``/``baseline`` to discover."""
        doc = {**spec.document(), "time": time.time()}
        try:
            await spec_topic.send(key=spec.version.encode(), value=orjson.dumps(doc))
        except Exception:  # the rows still flow; only discovery is lost
            logger.exception("could not publish the feature spec %s", spec.version)

    @app.task  # type: ignore[untyped-decorator]
    async def watch_loop_lag() -> None:
        # kill -USR1: where it waits (also the consumer thread's own loop)
        install_task_dump(asyncio.get_running_loop(), lambda: [_consumer_loop(app)])
        await handle.loop_lag.run()

    @app.timer(interval=FULL_GC_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def full_gc() -> None:
        logger.debug("full GC in %.1f ms", collect_old_garbage() * 1000)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def log_progress() -> None:
        (data_dir / "alive").touch()  # liveness for health checks (docker/compose.yaml)
        c = processor.counters
        logger.info(
            "customers %d, transactions %d, invalid %d, frames %d, rows per silo %s; "
            "%s; %s; %s; %s",
            c.customers, c.transactions, c.invalid, c.frames, c.per_silo_rows,
            handle.commit_ms.take_summary(), handle.commit_watch.take_summary(),
            gc_pauses.take_summary(),
            handle.loop_lag.take_summary(),
        )  # fmt: skip

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        flush_everything()
        # Faust flushed its producer before this signal: deliver what was just written
        # before the partitions move, or their next owner recovers state without it.
        await app.producer.flush()
        handle.commit_watch.reset(processed_positions())
        processor.forget({tp.partition for tp in revoked if tp.topic == transactions_name})
        gate.forget({tp.partition for tp in revoked if tp.topic == customers_name})

    return handle
