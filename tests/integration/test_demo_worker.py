"""The demo's stream worker, SIGKILLed mid-stream: its supervisor restarts it, rows complete.

The whole demo (broker, Flower, synthetic bank, report) takes minutes; this runs the
demo's own worker path on the session broker instead: ``start_worker`` (the command line
and environment ``fedstream demo`` uses, ``--store memory://`` included) in a namespace of
its own, ``keep_worker_alive`` (what the demo's watch loop calls every second; the same
``app.supervise.Supervised`` that ``fl up``'s supervisor runs), ``describe`` (its line in
the live view) and ``stop_services`` (the demo's teardown). Checked against the in-memory
reference: every row arrives with identical features, repeats only within the commit
cap, and the restart is printed, logged and shown.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from app.demo.runner import DemoOptions, Running, keep_worker_alive, start_worker, stop_services
from app.settings import Settings
from app.stream.commit import COMMIT_CAP_EVENTS
from app.stream.harness import produce_records, wait_committed, worker_group
from app.supervise import pid_alive
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    new_namespace,
    records,
    reference_rows,
)
from tests.integration.test_stream_restart import committed_total
from tests.integration.test_stream_worker import synthetic_phases
from topics import CUSTOMERS, TRANSACTIONS, namespaced


def _log_tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def test_demo_worker_is_restarted_after_sigkill_and_rows_complete(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the demo's settings (its run_demo sets the namespace; here one of the test's)
    spec = default_spec()
    ns = new_namespace(kafka_bootstrap, "demo")
    group = worker_group(ns)
    settings = Settings(bootstrap_servers=kafka_bootstrap, silos=len(SILOS), data_dir=tmp_path,
                        namespace=ns)  # fmt: skip
    customers, txns = synthetic_phases(customers=300, n_events=24_000)
    want, _ref = reference_rows([customers, txns], spec)
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    out = io.StringIO()
    console = Console(file=out, width=200)
    caplog.set_level(logging.WARNING, logger="app.supervise")
    worker = start_worker(settings, tmp_path, DemoOptions(), model=f"demo-{ns}")
    running = Running(worker=worker)
    first_pid = worker.pid
    assert first_pid is not None

    # Execute: profiles, then a backlog of transactions; SIGKILL once a third is committed
    try:
        produce_records(kafka_bootstrap, records(customers, ns))
        wait_committed(kafka_bootstrap, group, inputs, timeout_s=180)
        produce_records(kafka_bootstrap, records(txns, ns))
        deadline = time.monotonic() + 180
        while committed_total(kafka_bootstrap, group, inputs[1]) < len(txns) // 3:
            assert worker.alive(), _log_tail(worker.log)
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        os.kill(first_pid, signal.SIGKILL)
        at_kill = committed_total(kafka_bootstrap, group, inputs[1])
        assert at_kill < len(txns), "killed too late to test a restart"
        deadline = time.monotonic() + 60  # backoff 1 s; the loop polls as the demo's does
        while not keep_worker_alive(worker, console):
            assert time.monotonic() < deadline, f"not restarted: {worker.describe()}"
            time.sleep(0.2)
        shown = worker.describe()
        wait_committed(kafka_bootstrap, group, inputs, timeout_s=300)
        assert worker.alive(), _log_tail(worker.log)
        second_pid = worker.pid
    finally:
        stop_services(running, console)  # the demo's teardown
    got = collect_output(kafka_bootstrap, ns)

    # Assert: restarted once, printed, logged, shown; stopped on teardown
    printed = out.getvalue()
    logged = [r.getMessage() for r in caplog.records if r.name == "app.supervise"]
    total = got.total_rows()
    duplicates = total - sum(len(c) for c in got.rows.values())
    print(f"\nkilled at {at_kill}/{len(txns)} committed; {total} rows, {duplicates} duplicates;"
          f" shown: {shown!r}\n{printed}")  # fmt: skip
    assert worker.restarts == 1 and second_pid != first_pid
    assert f"exit {-signal.SIGKILL}" in printed and f"pid {second_pid}" in printed
    assert any(f"(pid {first_pid}) exited with {-signal.SIGKILL}" in m for m in logged), logged
    assert any(f"pid {first_pid} -> {second_pid} (restart 1)" in m for m in logged), logged
    assert shown.startswith(f"running (pid {second_pid})") and "restarts 1" in shown
    assert running.worker is None and not pid_alive(second_pid), "left running after teardown"
    assert f"stopping the worker: running (pid {second_pid})" in printed
    # ... and the rows: none lost or changed, repeats only from past the last commit
    for silo in SILOS:
        assert set(got.rows[silo]) == set(want[silo]), f"silo {silo}: rows lost or changed"
        assert all(got.rows[silo][k] >= n for k, n in want[silo].items())
    assert duplicates <= COMMIT_CAP_EVENTS
