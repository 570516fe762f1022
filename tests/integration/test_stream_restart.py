"""Stop the worker mid-stream (SIGTERM, SIGKILL), restart it: the output still matches.

SIGTERM: Faust stops its agents, the commit sensor flushes every open batch and the table
changes, then commits -> nothing is lost and nothing is sent twice.
SIGKILL: the restarted worker recovers its tables from the changelogs and resumes from the
last committed offset; frames sent after that commit are sent again, so rows can repeat
(at most COMMIT_EVERY_EVENTS, one commit interval: see the README's "Why the repeat bound
is one count interval"), but none is lost or different.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from app.kafka.clients import make_consumer
from app.stream.commit import COMMIT_EVERY_EVENTS
from app.stream.harness import (
    WorkerProcess,
    end_offsets,
    produce_records,
    wait_committed,
    worker_group,
)
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    new_namespace,
    records,
    reference_rows,
)
from tests.integration.test_stream_worker import synthetic_phases
from topics import CUSTOMERS, TRANSACTIONS, namespaced

ARGS = ("--batch-ms", "300")
DUPLICATE_BOUND = COMMIT_EVERY_EVENTS
"""Rows a SIGKILL may repeat: the events processed past the last confirmed commit, one
commit interval (the worker commits every 1 s or this many events, and its inputs wait
before a batch that would put more than this past the last confirmed commit)."""


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (0: none yet)."""
    consumer = make_consumer(bootstrap, group)
    try:
        ends = end_offsets(bootstrap, [topic])
        tps = [TopicPartition(topic, p) for (_t, p) in ends]
        return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(tps, timeout=30)}
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    return sum(committed_offsets(bootstrap, group, topic).values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_mid_stream_matches_reference(
    kafka_bootstrap: str, tmp_path: Path, sig: signal.Signals
) -> None:
    # Prepare
    spec = default_spec()
    ns = new_namespace(kafka_bootstrap, sig.name.lower())
    group = worker_group(ns)
    customers, txns = synthetic_phases(customers=300, n_events=60_000)
    want, ref = reference_rows([customers, txns], spec)
    n_valid = sum(len(rows) for rows in ref.rows.values())
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    worker = WorkerProcess(
        kafka_bootstrap, ns, tmp_path, len(SILOS), args=ARGS, log_level="INFO"
    ).start()

    # Execute: profiles, then a backlog of transactions; stop once a third is committed
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    try:
        produce_records(kafka_bootstrap, records(customers, ns))
        wait_committed(kafka_bootstrap, group, inputs, worker=worker)
        produce_records(kafka_bootstrap, records(txns, ns))
        deadline = time.monotonic() + 120
        while committed_total(kafka_bootstrap, group, inputs[1]) < len(txns) // 3:
            worker.check_alive()
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        time.sleep(0.4)  # mid-way between two commits
        marks["stop"] = time.monotonic() - t0
        code = worker.stop(sig)
        marks["stopped"] = time.monotonic() - t0
        at_stop = committed_total(kafka_bootstrap, group, inputs[1])
        assert at_stop < len(txns), "stopped too late to test a restart"
        worker.start()
        wait_committed(kafka_bootstrap, group, inputs, timeout_s=180, worker=worker)
        marks["done"] = time.monotonic() - t0
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
        marks["final stop"] = time.monotonic() - t0
    except BaseException:
        print(worker.log_tail())
        worker.stop(signal.SIGKILL)
        raise
    got = collect_output(kafka_bootstrap, ns)

    # Assert
    total = got.total_rows()
    duplicates = total - sum(len(c) for c in got.rows.values())
    print(f"\n{sig.name}: stopped at {at_stop}/{len(txns)} committed, exit {code}, "
          f"{total} rows for {n_valid} valid events, {duplicates} duplicates; "
          f"seconds: { {k: round(v, 1) for k, v in marks.items()} }")  # fmt: skip
    for silo in SILOS:
        assert set(got.rows[silo]) == set(want[silo]), f"silo {silo}: rows lost or changed"
    if sig == signal.SIGTERM:
        assert code == 0
        assert duplicates == 0
        for silo in SILOS:
            assert got.rows[silo] == want[silo]
    else:
        assert duplicates <= DUPLICATE_BOUND
        for silo in SILOS:  # a duplicate is a repeat of a reference row, nothing else
            assert all(got.rows[silo][k] >= n for k, n in want[silo].items())
