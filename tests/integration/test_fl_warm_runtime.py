"""The warm ClientApp runtime on REAL Flower: a failing round does not end the silo.

One SuperLink + one SuperNode (``--isolation process``) + its warm runtime. A task whose
token the SuperNode refuses ends without harm. The silo's topic is deleted mid-run, so
its ClientApp raises; the runtime must answer with an error, stay up in the same process
and train again once data is back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import topics
from app.fl import processes
from app.fl.kafka_io import ensure_topics, produce_frames, read_metrics
from app.fl.synthetic import synthetic_frames
from app.fl.warm_runtime import run_task
from app.kafka.admin import make_admin
from tests.integration.fl_support import run_config, seed_silos, silo_ids, start_flower, wait_rounds

pytestmark = pytest.mark.integration

ROWS = 500


def _wait_for(predicate: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _recreate(bootstrap: str, silo: int) -> None:
    """Create the silo's topic again (deletion completes asynchronously on the broker)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            ensure_topics(bootstrap, [silo])
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_failed_round_keeps_the_runtime_serving(
    kafka_bootstrap: str,
    unique: str,
    deployment: Path,
) -> None:
    # Prepare: one silo with one round of data
    (silo,) = silo_ids(unique, 950, 40)
    spec, model = f"spec-{unique}", f"fl-warm-{unique}"
    topic = topics.silo_batches(silo)
    seed_silos(kafka_bootstrap, [silo], spec, ROWS)
    dep = start_flower(deployment, kafka_bootstrap, [silo], run_config(spec, model))
    assert "runtime_pid" in dep.supernodes[str(silo)]
    wait_rounds(kafka_bootstrap, model, 1, timeout_s=90)
    log = deployment / "fl" / "logs" / f"runtime-{silo}.log"

    # Execute: a task the SuperNode withdrew (its token is refused, as after a run stops)
    # ends that task only; Flower's own retry logic would SIGINT this very process
    address = f"127.0.0.1:{dep.supernodes[str(silo)]['port']}"
    assert run_task(address, "a-withdrawn-token") is False

    # Execute: the silo topic disappears, so the ClientApp raises; then data comes back
    admin = make_admin(kafka_bootstrap)  # as the session admin
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    _wait_for(lambda: "task failed" in log.read_text(), "a failed task", timeout_s=60)
    _recreate(kafka_bootstrap, silo)
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, spec, ROWS, seed=3))
    docs = wait_rounds(kafka_bootstrap, model, 2, timeout_s=90)

    # Assert: the same runtime process failed one task, then trained round 2
    text = log.read_text()
    assert "does not exist" in text
    assert [d["round"] for d in docs[:2]] == [1, 2]
    assert docs[1]["silos"][str(silo)]["rows"] == ROWS
    status = processes.status(deployment, with_metrics=False)
    assert status is not None and status.processes[f"runtime-{silo}"]  # pid of `up`: alive
    assert len(read_metrics(kafka_bootstrap, model)) >= 2
