"""Prometheus metrics of a running worker, scraped over HTTP on the real broker."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.ports import free_port
from app.stream.harness import WorkerProcess, produce_records, wait_committed, worker_group
from tests.integration.stream_support import SILOS, new_namespace, records
from tests.integration.test_stream_worker import synthetic_phases
from topics import CUSTOMERS, TRANSACTIONS, namespaced


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_a_running_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare
    ns = new_namespace(kafka_bootstrap, "metrics")
    phases = synthetic_phases(customers=50, n_events=2_000)
    sent = [e for phase in phases for e in phase]
    port = free_port()
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    worker = WorkerProcess(kafka_bootstrap, ns, tmp_path, len(SILOS),
                           args=["--batch-ms", "300", "--store", "memory://",
                                 "--metrics-port", str(port)])  # fmt: skip

    # Execute
    with worker:
        produce_records(kafka_bootstrap, records(sent, ns))
        wait_committed(kafka_bootstrap, worker_group(ns), inputs, timeout_s=180, worker=worker)
        deadline = time.monotonic() + 30  # the lag sampler runs every 5 s
        while True:
            got = _scrape(port)
            lag_seen = [k for k in got if k[0] == "fedstream_worker_lag"]
            if len(lag_seen) == 8 or time.monotonic() > deadline:
                break
            time.sleep(1)
        log = worker.log_tail(200)

    # Assert
    kinds = {"customer": inputs[0], "transaction": inputs[1]}
    for kind, topic in kinds.items():
        assert got[("fedstream_events_total", (("topic", topic),))] == sum(
            e[0] == kind for e in sent
        )
    dead = {k: v for k, v in got.items() if k[0] == "fedstream_dead_letters_total"}
    assert sum(dead.values()) > 0 and all(dict(k[1])["reason"] for k in dead)
    assert {dict(k[1])["topic"] for k in lag_seen} == set(inputs), lag_seen
    assert all(got[k] == 0 for k in lag_seen)  # all committed, nothing behind
    assert got[("fedstream_event_to_enriched_seconds_count", ())] > 0
    assert got[("fedstream_commit_seconds_count", ())] > 0
    assert got[("fedstream_model_round", ())] == -1  # no model published
    assert "is overlapping" not in log
