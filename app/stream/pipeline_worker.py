"""The Faust worker of a user's pipeline (``fedstream worker --pipeline ...``).

Thin like :mod:`app.stream.worker`: agents hand raw records to the pipeline's compiled
form (:class:`app.pipeline.runner.PipelineRunner`, pure code) and send what it returns.

- every table topic of the pipeline -> a new version in the key's history; a
  :class:`JoinGate` holds the stream's micro-batch until the table partition with the
  same number (co-partitioned topics) has been read up to the batch's time;
- the stream topic, read in micro-batches (``Stream.take_events``: one runner call per
  batch, acked after it) -> rows routed to silos -> ``silo.<id>.batches`` frames carrying
  the pipeline's spec version;
- invalid records -> ``dlq.<topic>`` (reason and original bytes) for topics that have one
  in the catalogue, else logged and counted; the worker keeps running;
- the pipeline's spec (names, order, version) -> ``features.spec``.

Delivery: the same commit sensor as the fraud worker flushes open micro-batches right
before Faust picks offsets, so a committed offset means its row is in a delivered frame.
Not (yet) in this worker: table and window state lives in memory (a restarted worker
starts them empty from the committed offsets), rows are not scored with the global
model, no chatbot, no forwarding of mis-partitioned records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import orjson

from app.features.batcher import SiloBatchers
from app.features.dead_letter import dead_letter, dead_letter_key
from app.features.validation import InvalidRecord
from app.kafka.security import faust_settings
from app.pipeline.dsl import Pipeline
from app.pipeline.runner import PipelineRunner
from app.pipeline.spec import pipeline_spec
from app.settings import Settings
from app.stream.join_gate import join_gate
from app.stream.offsets import WorkerFaustApp
from app.stream.worker import JOIN_HOLD_S, JOIN_MAX_WAIT_S, SESSION_TIMEOUT_S, CommitSensor
from topics import FEATURE_SPECS, WORKER_APP_ID, catalogue, dlq, namespaced, silo_batches

__all__ = ["PipelineWorker", "create_pipeline_worker_app"]

logger = logging.getLogger(__name__)

TAKE_WITHIN_S = 0.05
"""Longest wait for a micro-batch of the stream to fill before it is processed."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class PipelineWorker:
    """The Faust app, the runner and the counters of a pipeline worker."""

    def __init__(self, app: faust.App, runner: PipelineRunner) -> None:
        self.app = app
        self.runner = runner
        self.counters = {"table": 0, "stream": 0, "rows": 0, "invalid": 0, "frames": 0}


def _event_time(raw: bytes | None, field: str) -> float | None:
    """The record's event time, or None if it has none (the runner dead-letters it)."""
    try:
        value = orjson.loads(raw or b"").get(field)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def create_pipeline_worker_app(
    settings: Settings, pipeline: Pipeline, worker_id: str = "0"
) -> PipelineWorker:
    """Build the Faust app that runs ``pipeline`` (see the module docstring)."""
    if pipeline.silos != len(settings.silo_ids):
        raise ValueError(f"pipeline {pipeline.name!r} routes to {pipeline.silos} silos, "
                         f"the deployment has {len(settings.silo_ids)} (--silos)")  # fmt: skip
    spec = pipeline_spec(pipeline)
    runner = PipelineRunner(pipeline)
    ns = settings.namespace
    data_dir = Path(settings.data_dir) / "worker" / worker_id
    data_dir.mkdir(parents=True, exist_ok=True)
    app = WorkerFaustApp(
        namespaced(WORKER_APP_ID, ns), broker=f"kafka://{settings.bootstrap}", store="memory://",
        datadir=str(data_dir), topic_partitions=settings.input_partitions,
        topic_replication_factor=1, key_serializer="raw", value_serializer="raw",
        web_enabled=False, broker_commit_interval=1.0, producer_linger_ms=5,
        producer_max_request_size=16 * 1024 * 1024, stream_buffer_maxsize=65536,
        consumer_auto_offset_reset="earliest", broker_session_timeout=SESSION_TIMEOUT_S,
        **faust_settings(),  # SASL_SSL as the process's principal (app.kafka.security)
    )  # fmt: skip
    handle = PipelineWorker(app, runner)
    batchers = SiloBatchers(settings.silo_ids, spec.version, spec.n_features,
                            settings.batch_rows, settings.batch_ms)  # fmt: skip
    known = {t.name for t in catalogue(settings.silo_ids, settings.input_partitions)}
    source = pipeline.rows.source
    stream_name = namespaced(source.topic, ns)
    tables = {namespaced(t.topic, ns): t for t in pipeline.tables}
    if len(tables) > 1:
        raise ValueError(f"pipeline {pipeline.name!r}: the worker joins one table, "
                         f"got {len(tables)}")  # fmt: skip
    table_name = next(iter(tables), None)
    gate = join_gate(app, table_name or stream_name, stream_name, JOIN_HOLD_S, JOIN_MAX_WAIT_S)
    # Faust's own commit timer (1 s, set above) commits; the sensor flushes before it
    dlqs = {namespaced(t, ns): app.topic(namespaced(dlq(t), ns), key_serializer="raw",
                                         value_serializer="raw")
            for t in [source.topic, *(t.topic for t in pipeline.tables)]
            if dlq(t) in known}  # fmt: skip
    silo_topics = {s: app.topic(namespaced(silo_batches(s), ns), value_serializer="raw")
                   for s in settings.silo_ids}  # fmt: skip

    def send_frames(frames: Sequence[tuple[int, bytes]]) -> None:
        for silo, frame in frames:
            handle.counters["frames"] += 1
            silo_topics[silo].send_soon(key=str(silo).encode(), value=frame)

    def send_dead_letter(msg: Any, reason: str) -> None:
        handle.counters["invalid"] += 1
        out = dlqs.get(msg.topic)
        if out is None:
            logger.warning("invalid record %s[%d]@%d (no dead-letter topic): %s",
                           msg.topic, msg.partition, msg.offset, reason)  # fmt: skip
            return
        value = dead_letter(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        out.send_soon(key=dead_letter_key(msg.key), value=value)

    app.sensors.add(CommitSensor(lambda: send_frames(batchers.flush_all(_now_ms()))))

    if table_name is not None:
        table = tables[table_name]

        @app.agent(app.topic(table_name, key_serializer="raw", value_serializer="raw"))
        async def on_table(stream: Any) -> None:
            async for event in stream.events():
                msg = event.message
                handle.counters["table"] += 1
                ts = None
                try:
                    runner.on_table_record(table, msg.key, msg.value)
                    ts = _event_time(msg.value, table.time)
                except InvalidRecord as exc:
                    send_dead_letter(msg, exc.reason)
                except Exception as exc:  # a bug on one record must not stop the agent
                    logger.exception("record %s[%d]@%d failed", msg.topic, msg.partition,
                                     msg.offset)  # fmt: skip
                    send_dead_letter(msg, f"internal error: {type(exc).__name__}: {exc}"[:500])
                gate.customer_read(msg.partition, msg.offset, ts)

    @app.agent(app.topic(stream_name, key_serializer="raw", value_serializer="raw"))
    async def on_stream(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_rows, within=TAKE_WITHIN_S):
            if table_name is not None:  # the table read up to each partition's latest time
                newest: dict[int, tuple[int, float]] = {}
                for ev in events:
                    ts = _event_time(ev.message.value, source.time)
                    if ts is not None:
                        p = ev.message.partition
                        off, t = newest.get(p, (ev.message.offset, ts))
                        newest[p] = (max(off, ev.message.offset), max(t, ts))
                for p, (offset, ts) in newest.items():
                    await gate.wait(p, offset, ts)
            handle.counters["stream"] += len(events)
            by_raw = {id(ev.message.value): ev.message for ev in events}
            try:
                result = runner.on_batch([(ev.message.key, ev.message.value) for ev in events])
            except Exception as exc:  # a bug in the user's code: the batch is dead-lettered
                logger.exception("pipeline %s failed on a batch", pipeline.name)
                for ev in events:
                    reason = f"pipeline error: {type(exc).__name__}: {exc}"
                    send_dead_letter(ev.message, reason[:500])
                continue
            for raw, reason in result.dead_letters:
                msg = by_raw.get(id(raw))
                if msg is not None:
                    send_dead_letter(msg, reason)
            now_ms = _now_ms()
            for silo, (_ids, x, y, ts_col) in result.rows.items():
                handle.counters["rows"] += len(y)
                for i in range(len(y)):
                    frame = batchers.add(silo, x[i], float(y[i]), None, float(ts_col[i]), now_ms)
                    if frame is not None:
                        send_frames([(silo, frame)])

    @app.timer(interval=0.2)  # type: ignore[untyped-decorator]
    async def flush_due_batches() -> None:
        send_frames(batchers.flush_due(_now_ms()))

    spec_topic = app.topic(namespaced(FEATURE_SPECS, ns), key_serializer="raw",
                           value_serializer="raw")  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def publish_spec() -> None:
        doc = {**spec.to_dict(), "n_features": spec.n_features, "time": time.time()}
        try:
            await spec_topic.send(key=spec.version.encode(), value=orjson.dumps(doc))
        except Exception:  # the rows still flow; only discovery is lost
            logger.exception("could not publish the feature spec %s", spec.version)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def log_progress() -> None:
        (data_dir / "alive").touch()
        logger.info("pipeline %s (spec %s): %s", pipeline.name, spec.version, handle.counters)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        send_frames(batchers.flush_all(_now_ms()))
        await app.producer.flush()
        if table_name is not None:
            gate.forget({tp.partition for tp in revoked if tp.topic == table_name})

    return handle
