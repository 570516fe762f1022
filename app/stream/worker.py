"""The Faust worker: thin agents that feed raw records to the pipeline's StreamProcessor.

The worker runs a pipeline (the built-in fraud pipeline of ``app/pipelines/fraud.py``
unless ``--pipeline`` names another); its operators execute in
:class:`~app.stream.processor.StreamProcessor` over changelog-backed Faust tables.

Agents
------
- the pipeline's table topic (``bank.customers``) -> versions of the key's history
  (table ``profiles``); a tombstone deletes the key;
- the stream topic (``bank.transactions``), read in micro-batches (``take_events``: one
  pipeline run per batch) -> join as of each event's time, windows (table ``windows``),
  features, score with the newest global model, ``features.enriched``, micro-batches per
  silo -> ``silo.<id>.batches``; a :class:`JoinGate` holds a batch until the table
  partition with the same number was read up to the batch's time;
- invalid input -> ``dlq.<input topic>`` with the reason and original bytes (bounded:
  ``app.features.dead_letter``). An unexpected error dead-letters the record (the batch,
  if the pipeline's own code failed on it) with "internal error": the agents keep running.

Delivery: a :class:`~app.stream.commit.CommitSensor` runs right before Faust picks the
offsets to commit. It sends every open micro-batch and stages the changed table entries
(one write per changed key per commit, not per event); right before the offsets go out,
the worker waits for the delivery of those rows, writes the staged entries, and Faust
flushes its producer and commits. So a committed offset always means "its row is in a
delivered frame and its state is in the changelog", and a stored state never covers a
record whose row was not delivered (a restart skips those by offset): a crash loses
nothing. Frames sent between two commits (a
batch that filled up) are sent again after a crash, so SIGKILL can duplicate rows of at most
one commit interval; SIGTERM duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import faust
import orjson

from app.features.event_time import TimePolicy
from app.features.spec import FeatureSpec
from app.features.validation import InvalidRecord
from app.kafka.security import faust_settings
from app.ops.worker_metrics import SAMPLE_INTERVAL_S, WorkerMetrics
from app.pipeline.dsl import Pipeline
from app.settings import Settings
from app.stream.commit import CommitSensor, Committer, CommitTimes, TableWriter, consumer_loop
from app.stream.commit_watch import CommitWatch
from app.stream.gc_pauses import FULL_GC_INTERVAL_S, collect_old_garbage, gc_pauses
from app.stream.join_gate import JoinGate, join_gate
from app.stream.loop_agents import attach_loop
from app.stream.loop_lag import LoopLag
from app.stream.offsets import WorkerFaustApp
from app.stream.periodic import every
from app.stream.processor import StreamProcessor, dead_letter, dead_letter_key
from app.stream.producer_flush import install_full_flush
from app.stream.release import release_in_order
from app.stream.repartition import Repartitioner
from app.stream.task_dump import install_task_dump
from topics import FEATURE_SPECS, WORKER_APP_ID, catalogue, dlq, namespaced, silo_batches

__all__ = ["CommitSensor", "WorkerHandle", "create_worker_app"]

logger = logging.getLogger(__name__)


PRODUCER_BUFFER_MESSAGES = 50_000
"""Records Faust's producer buffer may hold before the streams wait for it (Faust: 100)."""

COMMIT_INTERVAL_S = 1.0
"""How often the worker flushes its write-behind and commits offsets (its own timer)."""

FAUST_COMMIT_FALLBACK_S = 30.0
"""Faust's own commit timer, left as a fallback; its pre-commit flush runs in one piece."""

TAKE_MAX_EVENTS = 256
"""Stream records taken from Faust at a time (a micro-batch, released as the join gate
allows)."""

RUN_MAX_EVENTS = 16
"""Stream records per pipeline run, the loop's longest hold between two yields: chatbot
requests and commit steps wait behind at most one run. A run of a whole micro-batch
(50-256 records) held the loop 10-116 ms on a loaded box (111 of 5,390 agent steps over
25 ms in a chat bench leg; the worker before the pipeline engine yielded every 8 events:
12 of 75,678). A run costs ~0.4 ms plus ~40 µs per record (fraud pipeline alone)."""

TAKE_WITHIN_S = 0.05
"""Longest wait for a micro-batch of the stream to fill before it is processed."""

SESSION_TIMEOUT_S = 10.0
"""Consumer group session timeout of a worker (heartbeats every 3 s)."""

JOIN_HOLD_S = 0.5
"""How long a transaction waits on the broker for profile updates sent before it (see
``app.stream.join_gate``); also the least latency of a row when profiles are quiet."""

JOIN_MAX_WAIT_S = 10.0
"""Longest wait for a customers partition that makes no progress (then join anyway)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class WorkerHandle:
    """The Faust app plus the processor and the objects the agents share."""

    def __init__(self, app: faust.App, processor: StreamProcessor) -> None:
        self.app = app
        self.processor = processor
        self.last_event: dict[tuple[str, int], Any] = {}
        # per stream partition, the position after the last record of a finished batch
        self.finished: dict[Any, int] = {}
        self.loop: Any = None  # app.stream.loop.StreamLoop, set by create_worker_app
        self.commit_ms = CommitTimes()
        self.loop_lag = LoopLag()
        self.commit_watch = CommitWatch()
        self.metrics = WorkerMetrics([])  # Prometheus hooks (app.ops.worker_metrics)
        self.inputs_open = asyncio.Event()  # cleared while commit_in_steps runs
        self.inputs_open.set()
        self.gate: JoinGate | None = None  # set by create_worker_app


def _faust_app(settings: Settings, store: str, data_dir: Path) -> WorkerFaustApp:
    app = WorkerFaustApp(  # Faust's app with its offset tracking fixed (app.stream.offsets)
        namespaced(WORKER_APP_ID, settings.namespace),
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
    # buffer; the per-commit write-behind queues one record per changed key at once.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    # Faust's flush gave up on a record slower than 0.1 s and committed without it
    install_full_flush(app.producer.buffer)  # (app.stream.producer_flush)
    return app


def create_worker_app(
    settings: Settings,
    pipeline: Pipeline | FeatureSpec,
    store: str = "rocksdb://",
    worker_id: str = "0",
    follow_models: bool = True,
) -> WorkerHandle:
    """Build the Faust app of a stream worker running ``pipeline`` (``fedstream worker``).

    A :class:`FeatureSpec` stands for the built-in fraud pipeline with its windows.
    """
    data_dir = Path(settings.data_dir) / "worker" / worker_id
    data_dir.mkdir(parents=True, exist_ok=True)
    ns = settings.namespace
    app = _faust_app(settings, store, data_dir)
    profiles_table = app.Table("profiles", default=None, key_type=bytes, value_type=bytes,
                               partitions=settings.input_partitions)  # fmt: skip
    windows_table = app.Table("windows", default=None, key_type=bytes, value_type=bytes,
                              partitions=settings.input_partitions)  # fmt: skip

    def load(table: Any) -> Any:
        def read(key: str) -> bytes | None:
            value = table.get(key.encode())
            return None if value is None else bytes(value)

        return read

    processor = StreamProcessor(
        pipeline, settings.silo_ids, settings.batch_rows, settings.batch_ms,
        load_table=load(profiles_table), load_state=load(windows_table),
        time_policy=TimePolicy(settings.event_max_ahead_s, settings.event_max_back_s),
    )  # fmt: skip
    spec = processor.spec
    handle = WorkerHandle(app, processor)
    # model follower, features.enriched, chatbot agent (app.stream.loop)
    loop = handle.loop = attach_loop(app, settings, spec, processor, follow_models)  # type: ignore[arg-type]
    source = processor.pipeline.rows.source
    table_topic = processor.table.topic if processor.table is not None else None
    stream_topic = source.topic
    stream_name = namespaced(stream_topic, ns)
    table_name = namespaced(table_topic, ns) if table_topic is not None else None
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    stream = app.topic(stream_name, **raw)
    table_stream = app.topic(table_name, **raw) if table_name is not None else None
    gate = handle.gate = join_gate(app, table_name or stream_name, stream_name, JOIN_HOLD_S,
                                   JOIN_MAX_WAIT_S)  # fmt: skip
    inputs: dict[str, Any] = {stream_name: stream}
    if table_name is not None:
        inputs = {table_name: table_stream, **inputs}
    handle.metrics = WorkerMetrics(list(inputs))
    # records on a partition their key does not hash to (app.stream.repartition)
    repartition = Repartitioner(settings.input_partitions, inputs)
    silo_topics = {s: app.topic(namespaced(silo_batches(s), ns), value_serializer="raw")
                   for s in settings.silo_ids}  # fmt: skip
    known = {t.name for t in catalogue(settings.silo_ids, settings.input_partitions)}
    # keyed by the input topic's name as the messages carry it (namespaced)
    dlq_topics = {namespaced(t, ns): app.topic(namespaced(dlq(t), ns), **raw)
                  for t in (stream_topic, table_topic)
                  if t is not None and dlq(t) in known}  # fmt: skip
    writer = TableWriter(app, processor, profiles_table, windows_table, table_topic,
                         stream_topic, handle.last_event)  # fmt: skip

    def send_frames(frames: Sequence[tuple[int, bytes]]) -> None:
        for silo, frame in frames:
            silo_topics[silo].send_soon(key=str(silo).encode(), value=frame)

    def send_dead_letter(msg: Any, reason: str) -> None:
        handle.metrics.dead_letter(msg.topic, reason)
        processor.counters.invalid += 1
        logger.debug("dead letter from %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
        out = dlq_topics.get(msg.topic)
        if out is None:  # a user's topic without a dead-letter topic in the catalogue
            logger.warning("invalid record %s[%d]@%d (no dead-letter topic): %s",
                           msg.topic, msg.partition, msg.offset, reason)  # fmt: skip
            return
        value = dead_letter(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        out.send_soon(key=dead_letter_key(msg.key), value=value)

    def internal_error(msg: Any, exc: Exception) -> None:
        """A bug met on one record: log it, dead-letter the record, keep serving."""
        logger.exception("record %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
        send_dead_letter(msg, f"internal error: {type(exc).__name__}: {exc}"[:500])

    def flush_frames() -> None:
        send_frames(processor.flush_all(_now_ms()))

    committer = Committer(app, handle, writer, flush_frames, loop.delivered)
    processed_positions = committer.processed_positions
    # the staged state, written once its rows are delivered (app.stream.staged_state)
    app.before_offset_commit = committer.write_staged

    pace = committer.pace  # commit every interval or COMMIT_EVERY_EVENTS (app.stream.commit_pace)

    @app.task  # type: ignore[untyped-decorator]
    async def commit() -> None:
        while True:
            await pace.wait_due(COMMIT_INTERVAL_S)
            t0 = time.perf_counter()
            await committer.commit_in_steps()  # holds the inputs until the offsets are picked
            handle.metrics.committed(time.perf_counter() - t0)

    app.sensors.add(CommitSensor(committer.stage))

    if table_stream is not None:
        assert table_topic is not None and processor.table is not None
        table_time = processor.table.time

        @app.agent(table_stream)
        async def on_table(events: Any) -> None:
            async for event in events.events():
                if not handle.inputs_open.is_set():
                    await handle.inputs_open.wait()  # a commit is under way
                msg = event.message
                partition = msg.partition
                handle.last_event[(table_topic, partition)] = event
                handle.metrics.event(msg.topic)
                if repartition.forward_if_misplaced(event):
                    gate.customer_read(partition, msg.offset, None)  # read, moved on
                    continue
                ts = None
                try:
                    if event.value is None:  # tombstone: the bank deletes the key
                        loop.forget_customer(processor.delete_key(event.key, partition))
                    else:
                        version = processor.on_table_record(event.value, event.key, partition,
                                                            _now_ms())  # fmt: skip
                        ts = version.ts if table_time else None
                except InvalidRecord as exc:
                    send_dead_letter(msg, exc.reason)
                except Exception as exc:  # a bug on one record must not stop the agent
                    internal_error(msg, exc)
                gate.customer_read(partition, msg.offset, ts)

    def run_batch(events: list[Any]) -> None:
        """One pipeline run over a micro-batch; its outputs sent (see the module doc)."""
        now_ms = _now_ms()
        swapped = loop.sync_model(now_ms)  # a new global model: swap between batches
        if swapped:
            send_frames(swapped)
        records = [(ev.message.key, ev.message.value, ev.message.partition, ev.message.offset)
                   for ev in events]  # fmt: skip
        try:
            batch = processor.on_batch(records, now_ms)
        except Exception as exc:  # a bug in the pipeline's code: the batch is dead-lettered
            logger.exception("pipeline %s failed on a batch", processor.pipeline.name)
            for ev in events:
                send_dead_letter(ev.message, f"internal error: {type(exc).__name__}: {exc}"[:500])
            return
        by_raw = {id(ev.message.value): ev.message for ev in events}
        for raw_value, reason in batch.dead_letters:
            msg = by_raw.get(id(raw_value))
            if msg is not None:
                send_dead_letter(msg, reason)
        if batch.frames:
            send_frames(batch.frames)
        out = batch.rows
        if out is not None:
            stamps = [by_raw[id(r)].timestamp for r in out.raws]
            loop.on_batch(batch, [t and int(t * 1000) for t in stamps])
            enriched = handle.metrics.enriched
            for t in stamps:
                enriched(t)

    async def run_chunk(taken: list[Any], skip: set[int], chunk: range) -> None:
        for start in range(chunk.start, chunk.stop, RUN_MAX_EVENTS):
            if start > chunk.start:
                await asyncio.sleep(0)  # let chat requests and the commit in (RUN_MAX_EVENTS)
            if not handle.inputs_open.is_set():
                await handle.inputs_open.wait()  # a commit is under way
            part = range(start, min(start + RUN_MAX_EVENTS, chunk.stop))
            for i in part:  # processed from here on: its offset may be committed
                handle.last_event[(stream_topic, taken[i].message.partition)] = taken[i]
            mine = [taken[i] for i in part if i not in skip]
            if mine:
                run_batch(mine)

    @app.agent(stream)
    async def on_stream(events: Any) -> None:
        async for taken in events.take_events(TAKE_MAX_EVENTS, within=TAKE_WITHIN_S):
            forwarded = set()
            for i, event in enumerate(taken):
                handle.metrics.event(event.message.topic)
                if repartition.forward_if_misplaced(event):
                    forwarded.add(i)
            # at most COMMIT_CAP_EVENTS past the last confirmed commit (not while rebalancing)
            await pace.wait_room(len(taken), lambda: bool(app.rebalancing))
            # in stream order, each record once the join gate releases it (app.stream.release)
            await release_in_order(taken, gate if table_stream is not None else None,
                                   source.time, partial(run_chunk, taken, forwarded),
                                   forwarded, TAKE_WITHIN_S)  # fmt: skip
            pace.add(len(taken))
            for event in taken:  # acked by Faust once this iteration ends: committable
                handle.finished[event.message.tp] = event.message.offset + 1

    @every(app, 0.2)
    async def flush_due_batches() -> None:
        send_frames(processor.flush_due(_now_ms()))

    @app.timer(interval=SAMPLE_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def sample_metrics() -> None:
        model = loop.model
        handle.metrics.sample(app.consumer, processed_positions(), model.round if model else None)

    spec_topic = app.topic(namespaced(FEATURE_SPECS, ns), **raw)

    @app.task  # type: ignore[untyped-decorator]
    async def publish_spec() -> None:
        """Names, order and version of the rows, for ``fl up``/``baseline`` to discover."""
        doc = {**spec.to_dict(), "n_features": spec.n_features, "time": time.time()}
        try:
            await spec_topic.send(key=spec.version.encode(), value=orjson.dumps(doc))
        except Exception:  # the rows still flow; only discovery is lost
            logger.exception("could not publish the feature spec %s", spec.version)

    @app.task  # type: ignore[untyped-decorator]
    async def watch_loop_lag() -> None:
        # kill -USR1: where it waits (also the consumer thread's own loop)
        install_task_dump(asyncio.get_running_loop(), lambda: [consumer_loop(app)])
        await handle.loop_lag.run()

    @app.timer(interval=FULL_GC_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def full_gc() -> None:
        logger.debug("full GC in %.1f ms", collect_old_garbage() * 1000)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def log_progress() -> None:
        (data_dir / "alive").touch()  # liveness for health checks (docker/compose.yaml)
        c = processor.counters
        logger.info(
            "pipeline %s: table records %d, rows %d, invalid %d, replayed %d, frames %d, "
            "rows per silo %s; %s; %s; %s; %s",
            processor.pipeline.name, c.customers, c.transactions, c.invalid, c.replayed,
            c.frames, c.per_silo_rows, handle.commit_ms.take_summary(),
            f"{handle.commit_watch.take_summary()}, {pace.take_summary()}, "
            f"stalled commits {committer.stalls}", gc_pauses.take_summary(),
            handle.loop_lag.take_summary(),
        )  # fmt: skip

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        # outputs delivered, then all state written and delivered, before the partitions
        # move (or their next owner recovers state without it)
        await committer.flush_everything()
        handle.commit_watch.reset(committer.finished_positions())
        pace.reset()
        processor.forget({tp.partition for tp in revoked if tp.topic == stream_name})
        if table_name is not None:
            gate.forget({tp.partition for tp in revoked if tp.topic == table_name})

    return handle
