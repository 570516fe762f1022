"""Fresh workers create their table changelogs before Faust starts, and always commit.

Left to Faust, about one fresh start in four on a loaded box logged "...-changelog not
found in cluster metadata" and never committed; when a client asked for a changelog before
it existed, the broker auto-created it with one partition and ``delete`` and Faust's
producer crashed on it (app/stream/changelogs.py has the evidence). Here: several fresh
starts against fresh namespaces, an auto-created changelog repaired, a wrong one refused.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from confluent_kafka.admin import NewTopic

from app.kafka.admin import describe_topics, make_admin
from app.stream.harness import (
    FEDSTREAM,
    WorkerProcess,
    produce_records,
    wait_committed,
    worker_group,
)
from tests.integration.stream_support import PARTITIONS, SILOS, new_namespace, records
from tests.integration.test_stream_worker import synthetic_phases
from topics import CUSTOMERS, TRANSACTIONS, WORKER_TABLES, namespaced, worker_changelog

FRESH_STARTS = 4
RACE_LINES = ("not found in cluster metadata", "Ignoring missing topic", "Unrecognized partition")


def start_and_commit(bootstrap: str, ns: str, data_dir: Path) -> str:
    """Start a worker, send a small stream, wait until all is committed; returns its log."""
    customers, txns = synthetic_phases(customers=40, n_events=400)
    worker = WorkerProcess(bootstrap, ns, data_dir, len(SILOS), args=("--batch-ms", "300"))
    try:
        worker.start()
        produce_records(bootstrap, records(customers + txns, ns))
        inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
        try:
            wait_committed(bootstrap, worker_group(ns), inputs, timeout_s=90, worker=worker)
        except TimeoutError as exc:
            tail = worker.log_tail()
            raise AssertionError(f"fresh worker never committed: {exc}\n{tail}") from None
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
    finally:
        worker.stop(signal.SIGKILL)
    return worker.log_path.read_text(errors="replace")


def changelog_layout(bootstrap: str, ns: str) -> dict[str, tuple[int, str | None]]:
    names = [worker_changelog(t, ns) for t in WORKER_TABLES]
    states = describe_topics(make_admin(bootstrap), names)
    return {n: (states[n].partitions, states[n].configs.get("cleanup.policy")) for n in states}


def test_fresh_workers_create_their_changelogs_and_commit(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    for i in range(FRESH_STARTS):
        # Prepare: a namespace with the catalogue's topics, no changelogs
        ns = new_namespace(kafka_bootstrap, "fresh")
        assert changelog_layout(kafka_bootstrap, ns) == {}

        # Execute
        log = start_and_commit(kafka_bootstrap, ns, tmp_path / f"start{i}")

        # Assert
        want = {worker_changelog(t, ns): (PARTITIONS, "compact") for t in WORKER_TABLES}
        assert changelog_layout(kafka_bootstrap, ns) == want
        race = [line for line in log.splitlines() if any(r in line for r in RACE_LINES)]
        assert race == [], f"start {i}: " + "\n".join(race[:5])


def test_auto_created_changelog_is_repaired(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare: the windows changelog as the broker's auto-creation leaves it
    ns = new_namespace(kafka_bootstrap, "autocl")
    name = worker_changelog("windows", ns)
    admin = make_admin(kafka_bootstrap)
    auto_created = NewTopic(name, 1, 1, config={"cleanup.policy": "delete"})
    admin.create_topics([auto_created])[name].result(30)

    # Execute
    log = start_and_commit(kafka_bootstrap, ns, tmp_path)

    # Assert
    assert changelog_layout(kafka_bootstrap, ns)[name] == (PARTITIONS, "compact")
    assert f"changelog {name} did not match the catalogue; repaired" in " ".join(log.split())


def test_changelog_with_more_partitions_than_the_inputs_is_refused(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare
    ns = new_namespace(kafka_bootstrap, "widecl")
    name = worker_changelog("profiles", ns)
    admin = make_admin(kafka_bootstrap)
    admin.create_topics([NewTopic(name, PARTITIONS * 2, 1)])[name].result(30)
    cmd = [str(FEDSTREAM), "--bootstrap", kafka_bootstrap, "--data-dir", str(tmp_path), "worker"]

    # Execute
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**WorkerProcess(kafka_bootstrap, ns, tmp_path).env})  # fmt: skip

    # Assert: one clear line, no Faust started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "worker changelogs:" in done.stderr and name in done.stderr, done.stderr
    assert f"has {PARTITIONS * 2} partitions" in done.stderr, done.stderr
