"""send_events with a fake producer: topics, keys, payloads, pacing, BufferError, Ctrl-C."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import topics
from app.produce.sender import EventPacer, TokenBucket, send_events
from app.produce.synthetic import SyntheticBank, invalid_events


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= 0.05 + 1e-9, "sleeps must be small chunks"
        self.now += seconds


class FakeProducer:
    """Records produce() calls; can raise BufferError or fail deliveries on demand."""

    def __init__(self, full_every: int = 0, fail: set[str] | None = None) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.pending: list[tuple[Any, str]] = []
        self.full_every, self.fail = full_every, fail or set()
        self.calls = 0
        self.polls = 0
        self.flushed: list[float] = []

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any) -> None:
        self.calls += 1
        if self.full_every and self.calls % self.full_every == 0:
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key))
        self.pending.append((on_delivery, key))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return self._deliver()

    def flush(self, timeout: float) -> int:
        self.flushed.append(timeout)
        self._deliver()
        return 0

    def _deliver(self) -> int:
        for callback, key in self.pending:
            callback("boom" if key in self.fail else None, _Msg())
        done, self.pending = len(self.pending), []
        return done


class _Msg:
    def topic(self) -> str:
        return topics.TRANSACTIONS


def test_routes_by_kind_keys_by_customer_and_serialises_with_orjson() -> None:
    # Prepare
    events = list(SyntheticBank(customers=20, seed=0).events(n_events=300))
    producer = FakeProducer()
    # Execute
    summary = send_events(producer, events, progress=False)
    # Assert
    assert summary.customers + summary.transactions == 300
    assert summary.customers >= 20 and summary.invalid == 0 and summary.failed == 0
    assert not summary.interrupted
    for (kind, key, value), (topic, payload, sent_key) in zip(events, producer.sent, strict=True):
        expected = topics.CUSTOMERS if kind == "customer" else topics.TRANSACTIONS
        assert (topic, sent_key, orjson.loads(payload)) == (expected, key, value)
    assert producer.flushed == [30.0]


def test_raw_bytes_pass_through_and_count_as_invalid() -> None:
    bad = invalid_events(0)
    producer = FakeProducer()
    summary = send_events(producer, bad, progress=False)
    assert summary.invalid == len(bad)
    assert [p for _, p, _ in producer.sent] == [raw for _, _, raw, _ in bad]


def test_buffer_error_polls_and_retries_without_losing_events() -> None:
    events = list(SyntheticBank(customers=10, seed=0).events(n_events=100))
    producer = FakeProducer(full_every=7)
    summary = send_events(producer, events, progress=False)
    assert summary.transactions + summary.customers == 100
    assert len(producer.sent) == 100
    assert producer.polls >= 100 // 7


def test_failed_deliveries_are_counted() -> None:
    events = list(SyntheticBank(customers=5, seed=0).events(n_events=50))
    summary = send_events(FakeProducer(fail={"cust-000001"}), events, progress=False)
    assert summary.failed == sum(1 for _, key, _ in events if key == "cust-000001") > 0


def test_rate_limit_is_respected_with_small_sleeps() -> None:
    # Prepare
    clock = FakeClock()
    events = list(SyntheticBank(customers=10, seed=0).events(n_events=1000))
    # Execute
    summary = send_events(
        FakeProducer(), events, rate=200, progress=False, clock=clock, sleep=clock.sleep
    )
    # Assert: 1000 events at 200/s take about 5 s (minus the initial burst)
    assert 4.8 <= summary.seconds <= 5.2
    assert 190 <= summary.events_per_s <= 210


def test_token_bucket_and_pacer_directly() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        bucket.take()
    assert clock.now == pytest.approx(1.0, abs=0.01)
    pacer = EventPacer(60, clock=clock, sleep=clock.sleep)
    pacer.wait(1000.0)
    pacer.wait(1000.0 + 120)  # two minutes of event time at 60x = 2 s
    assert clock.now == pytest.approx(3.0, abs=0.01)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_speedup_paces_by_event_time() -> None:
    clock = FakeClock()
    events = [("transaction", "k", {"ts": 100.0 + i * 10}) for i in range(11)]
    summary = send_events(
        FakeProducer(), events, speedup=10, progress=False, clock=clock, sleep=clock.sleep
    )
    assert summary.seconds == pytest.approx(10.0, abs=0.06)


def test_ctrl_c_stops_flushes_and_reports_interrupted() -> None:
    # Prepare
    def stream() -> Any:
        yield from SyntheticBank(customers=10, seed=0).events(n_events=40)
        raise KeyboardInterrupt

    producer = FakeProducer()
    seen: list[Any] = []
    # Execute
    summary = send_events(producer, stream(), progress=False, on_sent=seen.append)
    # Assert
    assert summary.interrupted
    assert summary.customers + summary.transactions == 40 == len(seen)
    assert producer.flushed and producer.pending == []


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        send_events(FakeProducer(), [("payment", "k", {"ts": 1.0})], progress=False)
