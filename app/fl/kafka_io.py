"""Kafka edges of federated training: a silo's batch reader and the model/metrics topics.

- :class:`SiloReader` reads NEW frames of ONE silo topic from the committed offset of
  the silo's consumer group (manual assignment, no rebalance), up to a row budget, and
  commits only when told: what the server confirmed it aggregated
  (:meth:`SiloReader.advance`, see app/fl/offset_ledger.py) and unusable frames.
- :func:`publish_round` writes the global model frame to ``fl.model.global`` and the
  round metrics to ``fl.metrics`` (key = model name).
- :func:`read_models` / :func:`read_metrics` scan those topics from the beginning to the
  current end (used for resume, ``fl status`` and tests).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

import topics
from app.features.frames import BatchFrame, decode_batch
from app.kafka.clients import delivery_errors, make_consumer, make_producer

__all__ = [
    "SiloBatch",
    "SiloReader",
    "ensure_topics",
    "produce_frames",
    "publish_round",
    "read_metrics",
    "read_models",
    "scan_topic",
    "silo_group",
]

logger = logging.getLogger(__name__)

_TIMEOUT = 10.0
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
_READ_DEADLINE = 60.0  # never wait longer for messages below a known end offset


def silo_group(model_name: str, silo: int) -> str:
    """Consumer group whose committed offsets mark what silo ``silo`` has trained on."""
    return f"fedstream-fl.{model_name}.silo-{silo}"


@dataclass
class SiloBatch:
    """New rows of one round (copied out of the frames) and where reading stopped."""

    X: np.ndarray
    y: np.ndarray
    frames: int
    skipped_frames: int
    topics_read: set[str]
    next_offsets: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    last_stamps: dict[int, int] = field(default_factory=dict)  # Kafka timestamp of last read

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


class SiloReader:
    """Reads one silo topic; use as a context manager (the consumer is closed on exit)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._consumer: Consumer = make_consumer(bootstrap, group)

    def __enter__(self) -> SiloReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def _partitions(self) -> list[TopicPartition]:
        meta = self._consumer.list_topics(self.topic, timeout=_TIMEOUT).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"silo topic {self.topic} does not exist on the broker")
        return [TopicPartition(self.topic, p) for p in sorted(meta.partitions)]

    def _start_positions(self) -> tuple[list[TopicPartition], dict[int, int]]:
        parts = self._partitions()
        committed = _retry(lambda: self._consumer.committed(parts, timeout=_TIMEOUT))
        starts, ends = [], {}
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=_TIMEOUT
            )
            offset = tp.offset if tp.offset >= 0 else low
            if tp.offset >= 0 and tp.offset < low:  # retention removed what we never read
                logger.warning(
                    "%s[%d]: offset %d expired, resuming at %d",
                    self.topic,
                    tp.partition,
                    tp.offset,
                    low,
                )
                offset = low
            if high > max(low, tp.offset if tp.offset >= 0 else low):
                starts.append(TopicPartition(self.topic, tp.partition, offset))
                ends[tp.partition] = high
        return starts, ends

    def read(self, max_rows: int, spec_version: str, n_features: int) -> SiloBatch:
        """Read whole frames until ``max_rows`` would be exceeded or the end is reached.

        Frames of another spec version or width are skipped (and later committed: they
        can never be trained on); the first frame is taken even if larger than
        ``max_rows``.
        """
        t0 = time.perf_counter()
        starts, ends = self._start_positions()
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        rows = frames = skipped = 0
        next_offsets: dict[int, int] = {}
        stamps: dict[int, int] = {}
        seen: set[str] = set()
        if starts:
            self._consumer.assign(starts)
            open_parts = set(ends)
            full = False
            deadline = time.monotonic() + _READ_DEADLINE
            position = {tp.partition: tp.offset for tp in starts}
            while open_parts and not full and time.monotonic() < deadline:
                open_ends = {p: ends[p] for p in open_parts}
                msgs = _consume_at_most(self._consumer, open_ends, position)
                if not msgs:
                    continue
                for msg in msgs:
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    part, off = int(msg.partition() or 0), int(msg.offset() or 0)
                    if part not in open_parts:
                        continue
                    seen.add(str(msg.topic()))
                    frame = _decode(msg.value())
                    if (
                        frame is None
                        or frame.meta.spec_version != spec_version
                        or (frame.meta.cols != n_features)
                    ):
                        skipped += 1
                    elif rows and rows + frame.meta.rows > max_rows:
                        full = True
                        break
                    else:
                        xs.append(frame.X)
                        ys.append(frame.y)
                        rows += frame.meta.rows
                        frames += 1
                    next_offsets[part] = position[part] = off + 1
                    stamps[part] = int(msg.timestamp()[1])
                    if off + 1 >= ends[part]:
                        open_parts.discard(part)
                    if rows >= max_rows:
                        full = True
                        break
        X = np.concatenate(xs) if xs else np.zeros((0, n_features), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
        seconds = time.perf_counter() - t0
        return SiloBatch(X, y, frames, skipped, seen, next_offsets, seconds, stamps)

    def advance(self, confirmed: Mapping[int, tuple[int, int]]) -> dict[int, int]:
        """Commit what the server confirmed where it is past the committed offsets.

        ``confirmed``: partition -> (offset after the last record read, that record's Kafka
        timestamp). Confirmations are sent again with every round (app/fl/offset_ledger.py),
        so an older one than what is committed is normal: committed offsets never go back.
        One that names a record the topic no longer holds (the topic was recreated or
        truncated) is ignored. Returns the partitions moved and their new offsets.
        """
        if not confirmed:
            return {}
        known = {tp.partition for tp in self._partitions()}
        parts = [TopicPartition(self.topic, p) for p in sorted(confirmed) if p in known]
        committed = _retry(lambda: self._consumer.committed(parts, timeout=_TIMEOUT))
        ahead = {}
        for tp in committed:
            offset, stamp = confirmed[tp.partition]
            if offset > tp.offset and self._stamp_at(tp.partition, offset - 1) == stamp:
                ahead[tp.partition] = offset
            elif offset > tp.offset:
                logger.warning("%s[%d]: confirmed offset %d names another record than was "
                               "read (topic recreated?); ignored", self.topic, tp.partition,
                               offset)  # fmt: skip
        if ahead:
            offsets = [TopicPartition(self.topic, p, o) for p, o in ahead.items()]
            _retry(lambda: self._consumer.commit(offsets=offsets, asynchronous=False))
        return ahead

    def _stamp_at(self, partition: int, offset: int) -> int | None:
        """Kafka timestamp of the record at ``offset`` (None if the topic lacks it)."""
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=_TIMEOUT
        )
        if not low <= offset < high:
            return None
        self._consumer.assign([TopicPartition(self.topic, partition, offset)])
        try:
            for msg in self._consumer.consume(1, _TIMEOUT):
                if msg.error() is None and msg.offset() == offset:
                    return int(msg.timestamp()[1])
            return None
        finally:
            self._consumer.unassign()

    def commit(self, batch: SiloBatch) -> None:
        """Commit the positions after ``batch`` synchronously (call once the reply is built)."""
        if not batch.next_offsets:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in batch.next_offsets.items()]
        _retry(lambda: self._consumer.commit(offsets=offsets, asynchronous=False))


def _consume_at_most(
    consumer: Consumer, ends: dict[int, int], position: dict[int, int]
) -> list[Any]:
    """One ``consume`` call for at most the records left below the high watermarks.

    ``consume`` returns once it has ``num_messages`` records or its timeout passed, so
    asking for more than exist would end every read with a whole idle timeout.
    """
    left = sum(end - position[p] for p, end in ends.items())
    return consumer.consume(num_messages=max(1, min(256, left)), timeout=1.0)


def _retry(call: Callable[[], Any], attempts: int = 30) -> Any:
    """Retry a group-coordinator call while the coordinator moves or loads (fresh brokers)."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            transient = err.code() in _TRANSIENT or err.retriable()
            if not transient or attempt == attempts - 1:
                raise
            logger.debug("retrying after %s", err)
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _decode(value: bytes | None) -> BatchFrame | None:
    if value is None:
        return None
    try:
        return decode_batch(value)
    except ValueError as exc:
        logger.warning("skipping an undecodable batch frame: %s", exc)
        return None


def scan_topic(bootstrap: str, topic: str, key: str | None = None) -> Iterator[tuple[bytes, Any]]:
    """Yield ``(key, value)`` of a topic from the beginning to its current end."""
    consumer = make_consumer(bootstrap, f"fedstream-scan-{uuid.uuid4().hex[:8]}")
    try:
        meta = consumer.list_topics(topic, timeout=_TIMEOUT).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends: dict[int, int] = {}
        position: dict[int, int] = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT)
            if high > low:
                ends[p], position[p] = high, low
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, o) for p, o in position.items()])
        wanted = None if key is None else key.encode()
        deadline = time.monotonic() + _READ_DEADLINE
        while ends and time.monotonic() < deadline:
            for msg in _consume_at_most(consumer, ends, position):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                if wanted is None or msg.key() == wanted:
                    yield msg.key() or b"", msg.value()
                part, off = int(msg.partition() or 0), int(msg.offset() or 0)
                position[part] = off + 1
                if off + 1 >= ends.get(part, 0):
                    ends.pop(part, None)
    finally:
        consumer.close()


def read_models(bootstrap: str, model_name: str) -> list[bytes]:
    """All model frames of ``model_name`` still on ``fl.model.global``, oldest first."""
    return [v for _k, v in scan_topic(bootstrap, topics.MODEL_GLOBAL, model_name) if v]


def read_metrics(bootstrap: str, model_name: str) -> list[dict[str, Any]]:
    """All round-metrics documents of ``model_name`` on ``fl.metrics``, oldest first."""
    out = []
    for _k, value in scan_topic(bootstrap, topics.FL_METRICS, model_name):
        if value:
            out.append(orjson.loads(value))
    return out


def publish_round(
    bootstrap: str,
    model_name: str,
    model_frame: bytes,
    metrics: dict[str, Any],
    producer_factory: Callable[..., Any] = make_producer,
) -> None:
    """Publish one round's model frame and metrics; raises if delivery fails."""
    producer = producer_factory(bootstrap, **{"linger.ms": 0})
    errors = delivery_errors()
    producer.produce(topics.MODEL_GLOBAL, value=model_frame, key=model_name, on_delivery=errors)
    producer.produce(
        topics.FL_METRICS,
        value=orjson.dumps(metrics, option=orjson.OPT_SERIALIZE_NUMPY),
        key=model_name,
        on_delivery=errors,
    )
    left = producer.flush(30.0)
    if left or errors.failed:
        raise RuntimeError(f"publishing round {metrics.get('round')} failed: {errors.first}")


def produce_frames(bootstrap: str, topic: str, key: str, frames: list[bytes]) -> None:
    """Write encoded frames to a topic and wait for delivery (tests, benchmark, demos)."""
    producer = make_producer(bootstrap)
    errors = delivery_errors()
    for frame in frames:
        producer.produce(topic, value=frame, key=key, on_delivery=errors)
        producer.poll(0)
    if producer.flush(60.0) or errors.failed:
        raise RuntimeError(f"writing frames to {topic} failed: {errors.first}")


def ensure_topics(bootstrap: str, silo_ids: list[int]) -> None:
    """Create the catalogue's topics for ``silo_ids`` that are missing (tests, benchmark)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from app.kafka.security import client_config

    admin = AdminClient(client_config(bootstrap))
    existing = set(admin.list_topics(timeout=_TIMEOUT).topics)
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.configs)
        for s in topics.catalogue(silo_ids)
        if s.name not in existing
    ]
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result(timeout=_TIMEOUT)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            logger.debug("%s created concurrently", name)
