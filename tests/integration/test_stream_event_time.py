"""The join is in event time: how the worker reads its inputs does not change a row.

The same events (transactions with profile updates among them, in event-time order) are
consumed once as a backlog (everything on the broker before the worker starts, so the
worker reads both topics as fast as it can, in whatever interleaving Faust's fetcher gives)
and once in real time (sent at a steady rate while the worker runs). Both give exactly the
reference's rows, and the profile updates really changed rows. The worker also published
its feature spec on ``features.spec`` (what ``fl up`` and ``baseline`` discover).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from app.features.reference import Event
from app.fl.spec_source import published_specs
from app.kafka.clients import delivery_errors, make_producer
from app.produce import SyntheticBank
from app.stream.harness import WorkerProcess, produce_records, wait_committed, worker_group
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    encode,
    new_namespace,
    records,
    reference_rows,
)
from topics import CUSTOMERS, FEATURE_SPECS, TRANSACTIONS, namespaced

ARGS = ("--batch-ms", "300")


def events_with_updates(
    customers: int = 120, n_events: int = 6_000, updates: int = 3, seed: int = 5
) -> list[Event]:
    """Synthetic events plus ``updates`` profile changes per customer, in event-time order."""
    bank = SyntheticBank(customers=customers, silos=len(SILOS), seed=seed)
    base = list(bank.events(n_events=n_events))
    first, last = base[customers][2]["ts"], base[-1][2]["ts"]
    rng = random.Random(seed)
    extra = []
    for i in range(customers):
        for _ in range(updates):
            ts = round(rng.uniform(first, last), 3)
            profile = bank.profile(i, ts)
            profile["credit_limit"] = round(profile["credit_limit"] * rng.choice((0.5, 2.0, 4.0)))
            extra.append(("customer", bank.ids[i], profile))
    merged = sorted(base + extra, key=lambda e: (e[2]["ts"], e[0] == "customer"))
    return [encode(kind, key, value) for kind, key, value in merged]


def _inputs(ns: str) -> list[str]:
    return [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]


def _worker(bootstrap: str, ns: str, data_dir: Path) -> WorkerProcess:
    # INFO: the progress line every 10 s; a timed-out wait also has it dump its tasks
    return WorkerProcess(bootstrap, ns, data_dir, len(SILOS), args=ARGS, log_level="INFO")


def run_backlog(bootstrap: str, ns: str, events: Sequence[Event], data_dir: Path) -> None:
    produce_records(bootstrap, records(events, ns))
    with _worker(bootstrap, ns, data_dir) as worker:
        try:
            wait_committed(bootstrap, worker_group(ns), _inputs(ns), worker=worker)
        except BaseException:
            print(worker.log_tail(400))
            raise
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()


def send_paced(bootstrap: str, ns: str, events: Sequence[Event], per_s: float) -> None:
    """Send ``events`` at ``per_s`` with one producer (chunks of 50, each delivered)."""
    producer = make_producer(bootstrap)
    errors = delivery_errors()
    chunk, t0 = 50, time.monotonic()
    for i in range(0, len(events), chunk):
        for topic, key, value in records(events[i : i + chunk], ns):
            producer.produce(topic, value=value, key=key, on_delivery=errors)
        producer.flush(30)
        time.sleep(max(0.0, t0 + (i + chunk) / per_s - time.monotonic()))
    assert producer.flush(60) == 0 and not errors.failed, errors.first


def run_realtime(
    bootstrap: str, ns: str, events: Sequence[Event], data_dir: Path, per_s: float
) -> None:
    with _worker(bootstrap, ns, data_dir) as worker:
        try:
            produce_records(bootstrap, records(events[:1], ns))  # the worker is up, reading
            wait_committed(bootstrap, worker_group(ns), _inputs(ns), worker=worker)
            send_paced(bootstrap, ns, events[1:], per_s)
            wait_committed(bootstrap, worker_group(ns), _inputs(ns), worker=worker)
        except BaseException:
            print(worker.log_tail(400))
            raise
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()


def test_backlog_and_real_time_give_reference_rows(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare
    spec = default_spec()
    events = events_with_updates()
    want, ref = reference_rows([events], spec)
    n_rows = sum(len(r) for r in ref.rows.values())
    backlog_ns = new_namespace(kafka_bootstrap, "backlog")
    live_ns = new_namespace(kafka_bootstrap, "live")

    # Execute
    run_realtime(kafka_bootstrap, live_ns, events, tmp_path / "live", per_s=1_500)
    run_backlog(kafka_bootstrap, backlog_ns, events, tmp_path / "backlog")
    backlog = collect_output(kafka_bootstrap, backlog_ns)
    live = collect_output(kafka_bootstrap, live_ns)
    published = published_specs(kafka_bootstrap, namespaced(FEATURE_SPECS, backlog_ns))

    # Assert
    assert n_rows > 5_000
    assert [(d["version"], d["columns"]) for d in published] == [(spec.version, list(spec.columns))]
    assert backlog.total_rows() == live.total_rows() == n_rows
    for silo in SILOS:
        assert backlog.rows[silo] == want[silo], f"silo {silo}: backlog differs from reference"
        assert live.rows[silo] == want[silo], f"silo {silo}: real time differs from reference"
    # the updates mattered: a latest-value join (every transaction with its customer's
    # final profile: all versions at one time, so the last one read wins) gives other rows
    flat = [encode("customer", e[1].decode(), {**orjson.loads(e[2]), "ts": 1.0})
            for e in events if e[0] == "customer"]  # fmt: skip
    latest_rows, _ = reference_rows([flat + [e for e in events if e[0] == "transaction"]], spec)
    changed = sum((want[s] - latest_rows[s]).total() for s in SILOS)
    assert changed > 1_000, f"only {changed} rows depend on the profile version"
