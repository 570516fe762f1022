"""Send event streams to Kafka: the only module of ``app.produce`` that touches a producer.

``send_events`` serialises each value with orjson (raw ``bytes`` values of invalid test
events pass through untouched), keys every record by customer_id, picks the topic by event
kind from the ``topics`` catalogue, paces by rate or by event time, shows progress, survives
a full local queue and turns Ctrl-C into a clean stop with a flush.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import topics
from app.kafka.clients import delivery_errors, produce_when_room

__all__ = ["TOPIC_OF_KIND", "EventPacer", "SendSummary", "TokenBucket", "send_events"]

logger = logging.getLogger(__name__)

TOPIC_OF_KIND = {"customer": topics.CUSTOMERS, "transaction": topics.TRANSACTIONS}
_MAX_SLEEP = 0.05  # sleep in small chunks so Ctrl-C and polling stay responsive
_MIN_SLEEP = 1e-4  # sub-0.1 ms waits are noise (and never end on a coarse clock)
_EPS = 1e-9
_POLL_EVERY = 1000


@dataclass(frozen=True)
class SendSummary:
    """What one ``send_events`` call did.

    Attributes
    ----------
    customers, transactions : valid events handed to the producer, by kind.
    invalid : raw-bytes (invalid test) events handed to the producer.
    seconds, events_per_s : wall time and throughput of the whole call (flush included).
    failed : deliveries the broker reported as failed.
    interrupted : True when Ctrl-C stopped the run early.
    unflushed : records still queued when the final flush timed out.
    """

    customers: int
    transactions: int
    invalid: int
    seconds: float
    events_per_s: float
    failed: int
    interrupted: bool = False
    unflushed: int = 0

    @property
    def sent(self) -> int:
        return self.customers + self.transactions + self.invalid


class TokenBucket:
    """Rate limiter: ``take()`` blocks until one token (event) is available.

    Parameters
    ----------
    rate : tokens per second (> 0).
    burst : bucket capacity; default a twentieth of a second's worth (at least 1).
    clock, sleep : injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        self.rate, self.capacity = rate, burst or max(1.0, rate / 20)
        self.clock, self.sleep = clock, sleep
        self.tokens, self.last = self.capacity, clock()

    def take(self) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0 - _EPS:
                self.tokens = max(0.0, self.tokens - 1.0)
                return
            self.sleep(min(_MAX_SLEEP, max(_MIN_SLEEP, (1.0 - self.tokens) / self.rate)))


class EventPacer:
    """Replays at ``speedup`` x real time: waits until ``(ts - first ts) / speedup`` has passed."""

    def __init__(
        self,
        speedup: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        self.speedup, self.clock, self.sleep = speedup, clock, sleep
        self.origin: tuple[float, float] | None = None

    def wait(self, ts: float) -> None:
        if self.origin is None:
            self.origin = (ts, self.clock())
            return
        due = self.origin[1] + (ts - self.origin[0]) / self.speedup
        while (left := due - self.clock()) > _MIN_SLEEP:
            self.sleep(min(_MAX_SLEEP, left))


class _Progress:
    """A rich progress line with events/s, or nothing when disabled."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        console = Console(stderr=True)
        self.enabled = enabled and console.is_terminal and sys.stderr.isatty()
        self.progress: Progress | None = None
        if self.enabled:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("sending {task.completed:,.0f}" + (f"/{total:,}" if total else "")),
                TextColumn("[cyan]{task.fields[rate]:,.0f} events/s"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.task = self.progress.add_task("send", total=total, rate=0.0)
            self.progress.start()

    def update(self, done: int, rate: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, rate=rate)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def send_events(
    producer: Any,
    events: Iterable[tuple[Any, ...]],
    rate: float | None = None,
    progress: bool = True,
    on_sent: Callable[[tuple[Any, ...]], None] | None = None,
    *,
    speedup: float | None = None,
    total: int | None = None,
    flush_timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SendSummary:
    """Produce events to their topics and wait for delivery.

    Parameters
    ----------
    producer : a confluent-kafka ``Producer`` (see ``app.kafka.clients.make_producer``) or
        anything with ``produce(topic, value=, key=, on_delivery=)``, ``poll`` and ``flush``.
    events : ``(kind, key, value, ...)`` tuples; value is a dict (orjson-serialised) or
        raw bytes (sent as is and counted as invalid).
    rate : events per second (token bucket); None = as fast as possible.
    progress : show a progress line (only on a terminal).
    on_sent : called with each event after it was handed to the producer.
    speedup : replay at this multiple of event time (value ``ts``); None = no pacing.
    total : expected number of events, for the progress line.
    flush_timeout : seconds to wait for outstanding deliveries at the end.
    clock, sleep : injectable for tests.

    Returns
    -------
    SendSummary
        Counts, timing, failed deliveries; ``interrupted=True`` after Ctrl-C.
    """
    errors = delivery_errors()
    bucket = TokenBucket(rate, clock=clock, sleep=sleep) if rate else None
    pacer = EventPacer(speedup, clock=clock, sleep=sleep) if speedup else None
    bar = _Progress(progress, total)
    counts = {"customer": 0, "transaction": 0, "invalid": 0}
    start = clock()
    done = 0
    interrupted = False
    try:
        for event in events:
            kind, key, value = event[0], event[1], event[2]
            topic = TOPIC_OF_KIND.get(kind)
            if topic is None:
                raise ValueError(f"unknown event kind {kind!r}; expected customer or transaction")
            raw = isinstance(value, bytes | bytearray)
            if bucket is not None:
                bucket.take()
            if pacer is not None and not raw:
                pacer.wait(float(value["ts"]))
            payload = bytes(value) if raw else orjson.dumps(value)
            produce_when_room(producer, topic, payload, key, _MAX_SLEEP, on_delivery=errors)
            counts["invalid" if raw else kind] += 1
            done += 1
            if on_sent is not None:
                on_sent(event)
            if done % _POLL_EVERY == 0:
                producer.poll(0)
                bar.update(done, done / max(clock() - start, 1e-9))
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted after %d events; flushing what was sent", done)
    finally:
        bar.update(done, done / max(clock() - start, 1e-9))
        bar.stop()
    unflushed = _flush(producer, flush_timeout)
    seconds = clock() - start
    if errors.failed:
        logger.error("%d deliveries failed (first: %s)", errors.failed, errors.first)
    if unflushed:
        logger.error("%d records still queued after a %.0f s flush", unflushed, flush_timeout)
    return SendSummary(
        customers=counts["customer"],
        transactions=counts["transaction"],
        invalid=counts["invalid"],
        seconds=seconds,
        events_per_s=done / seconds if seconds > 0 else 0.0,
        failed=errors.failed,
        interrupted=interrupted,
        unflushed=unflushed,
    )


def _flush(producer: Any, timeout: float) -> int:
    """Flush; a second Ctrl-C during the flush gives up waiting."""
    try:
        return int(producer.flush(timeout))
    except KeyboardInterrupt:
        logger.warning("flush interrupted; queued records may be lost")
        return len(producer) if hasattr(producer, "__len__") else 0
