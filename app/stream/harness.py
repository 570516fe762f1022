"""Drive a real stream worker from outside: tests and ``fedstream bench stream`` use this.

- :class:`WorkerProcess`: ``fedstream worker`` as a subprocess (own data dir, namespace,
  log file), stopped with SIGTERM or killed with SIGKILL.
- :func:`produce_records`: send raw ``(topic, key, value)`` records and wait for delivery.
- :func:`wait_committed`: wait until a consumer group has committed every record of some
  topics (for the worker: its rows are in delivered frames, see ``app.stream.worker``).
- :func:`read_topic`: every record of a topic up to its current end.

All topic names come from the catalogue through :func:`topics.namespaced`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from app.kafka.admin import apply_catalogue, make_admin
from app.kafka.clients import delivery_errors, make_consumer, make_producer, produce_when_room
from app.kafka.provision import provision
from topics import WORKER_APP_ID, catalogue, chat_tenants, namespaced

__all__ = [
    "Record",
    "WorkerProcess",
    "create_topics",
    "end_offsets",
    "produce_records",
    "read_topic",
    "wait_committed",
    "worker_group",
]

logger = logging.getLogger(__name__)

FEDSTREAM = Path(sys.executable).with_name("fedstream")


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


def worker_group(namespace: str) -> str:
    """Consumer group (= Faust app id) of the workers of a namespace."""
    return namespaced(WORKER_APP_ID, namespace)


def create_topics(bootstrap: str, silo_ids: Sequence[int], partitions: int, namespace: str) -> None:
    """Apply the namespaced catalogue and its principals' ACLs (on a secure cluster, as the
    process's admin); raises RuntimeError on problems."""
    specs = catalogue(tuple(silo_ids), partitions, namespace)
    report = apply_catalogue(make_admin(bootstrap), specs)
    if report.problems:
        raise RuntimeError(f"topic setup failed: {report.problems}")
    provision(bootstrap, namespace, silo_ids, chat_tenants(tuple(silo_ids)), prune=("stream",))


class WorkerProcess:
    """A ``fedstream worker`` subprocess; use as a context manager (killed on exit).

    Parameters
    ----------
    bootstrap, namespace, data_dir, silos : where and what it runs on.
    worker_id : its name (own table directory under ``data_dir``).
    args : further ``worker`` options, e.g. ``["--batch-ms", "300"]``.
    env : extra environment (``FEDSTREAM_*`` settings).
    log_level : the worker's ``--log-level`` (INFO adds its progress line every 10 s).
    """

    def __init__(
        self,
        bootstrap: str,
        namespace: str,
        data_dir: Path,
        silos: int = 3,
        worker_id: str = "w0",
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python_prefix: Sequence[str] = (),
        log_level: str = "WARNING",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / f"worker-{worker_id}.log"
        self.cmd = [
            *python_prefix,
            str(FEDSTREAM),
            "--bootstrap",
            bootstrap,
            "--silos",
            str(silos),
            "--data-dir",
            str(data_dir),
            "--log-level",
            log_level,
            "worker",
            "--worker-id",
            worker_id,
            *args,
        ]
        self.env = {**os.environ, "FEDSTREAM_NAMESPACE": namespace, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n=== start {self.starts}: {' '.join(self.cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"worker exited ({code}); log:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL after ``timeout_s``. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            logger.error("worker ignored signal %s for %.0f s; killing it", sig, timeout_s)
            self.proc.kill()
            return self.proc.wait(10)

    def dump_tasks(self, settle_s: float = 2.0) -> str:
        """Have a running worker log where it waits (app.stream.task_dump); returns that
        part of its log (empty if it is not running)."""
        if not self.alive() or self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(settle_s)
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        at = text.rfind("task dump:")
        return "" if at < 0 else "\n" + text[at:]

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(signal.SIGKILL, 10)


def produce_records(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]], **config: Any
) -> int:
    """Send ``(topic, key, value)`` records; wait for delivery; raise if any failed."""
    producer = make_producer(bootstrap, **config)
    errors = delivery_errors()
    n = 0
    for topic, key, value in records:
        produce_when_room(producer, topic, value, key, on_delivery=errors)
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    if left or errors.failed:
        raise RuntimeError(f"{left} records undelivered, {errors.failed} failed: {errors.first}")
    return n


def _partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    meta = consumer.list_topics(topic, timeout=30)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise RuntimeError(f"topic {topic} does not exist")
    return [TopicPartition(topic, p) for p in sorted(meta.topics[topic].partitions)]


_LEADER_NOT_READY = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30.0) -> int:
    """The partition's high watermark; retried while a new topic's leader is not known
    (NOT_LEADER_FOR_PARTITION right after the topic was created)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=timeout_s)[1])
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (
                err.retriable() or err.code() in _LEADER_NOT_READY
            ):
                raise
            time.sleep(0.2)


def end_offsets(bootstrap: str, topic_names: Iterable[str]) -> dict[tuple[str, int], int]:
    """High watermark of every partition of the topics."""
    consumer = make_consumer(bootstrap, "fedstream-harness-watermarks")
    try:
        out: dict[tuple[str, int], int] = {}
        for topic in topic_names:
            for tp in _partitions(consumer, topic):
                out[(topic, tp.partition)] = _high_watermark(consumer, tp)
        return out
    finally:
        consumer.close()


def wait_committed(
    bootstrap: str,
    group: str,
    topic_names: Sequence[str],
    timeout_s: float = 120.0,
    worker: WorkerProcess | None = None,
) -> float:
    """Wait until ``group`` committed every partition of ``topic_names`` up to its end.

    Returns the seconds waited; raises TimeoutError (or RuntimeError if ``worker`` died).
    """
    start = time.monotonic()
    target = end_offsets(bootstrap, topic_names)
    wanted = [TopicPartition(t, p) for (t, p), high in target.items() if high > 0]
    consumer = make_consumer(bootstrap, group)  # never subscribes: only reads commits
    try:
        while True:
            try:
                committed = consumer.committed(wanted, timeout=30)
            except KafkaException as exc:  # e.g. NOT_COORDINATOR while the broker warms up
                logger.debug("committed offsets of %s not readable yet: %s", group, exc)
                committed = []
            done = {(tp.topic, tp.partition): tp.offset for tp in committed}
            if all(done.get(k, -1) >= high for k, high in target.items() if high > 0):
                return time.monotonic() - start
            if worker is not None:
                worker.check_alive()
            if time.monotonic() - start > timeout_s:
                dump = worker.dump_tasks() if worker is not None else ""
                raise TimeoutError(f"group {group} committed {done}, wanted {target}{dump}")
            time.sleep(0.2)
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every record of ``topic`` from the beginning to its current end."""
    consumer = make_consumer(bootstrap, "fedstream-harness-reader")
    try:
        tps = _partitions(consumer, topic)
        ends: dict[int, int] = {}
        assign: list[TopicPartition] = []
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            if high > low:
                ends[tp.partition] = high
                assign.append(TopicPartition(topic, tp.partition, low))
        out: list[Record] = []
        if not assign:
            return out
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        position = {p: -1 for p in ends}
        while any(position[p] + 1 < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: at {position}, ends {ends}")
            for msg in consumer.consume(10_000, 0.5):
                if msg.error():
                    raise RuntimeError(f"reading {topic}: {msg.error()}")
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                position[partition] = offset
                value = msg.value() or b""
                stamp = msg.timestamp()[1]
                headers = tuple(
                    (str(h[0]), h[1] if isinstance(h[1], bytes) else b"")
                    for h in msg.headers() or ()
                )
                out.append(Record(topic, partition, offset, msg.key(), value, stamp, headers))
        return out
    finally:
        consumer.close()
