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
from confluent_kafka.admin import AdminClient

import topics
from app.fl import processes
from app.fl.kafka_io import ensure_topics, produce_frames, read_metrics
from app.fl.synthetic import synthetic_frames
from app.fl.warm_runtime import run_task
from app.ports import free_port
from tests.integration.test_fl_rounds import _wait_rounds, deployment  # noqa: F401

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
    deployment: Path,  # noqa: F811
) -> None:
    # Prepare: one silo with one round of data
    silo = 950 + int(unique[:4], 16) % 40
    spec, model = f"spec-{unique}", f"fl-warm-{unique}"
    topic = topics.silo_batches(silo)
    ensure_topics(kafka_bootstrap, [silo])
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, spec, ROWS))
    run_config = {
        "num-rounds": 0,
        "min-nodes": 1,
        "max-rows-per-round": ROWS,
        "min-rows": 100,
        "spec-version": spec,
        "n-features": 8,
        "hidden": "8",
        "model-name": model,
        "round-timeout": 30.0,
        "idle-backoff-max": 1.0,
    }
    dep = processes.up(
        data_dir=deployment,
        bootstrap=kafka_bootstrap,
        silo_ids=[silo],
        superlink_port=free_port(),
        supernode_base_port=free_port(),
        run_config=run_config,
    )
    assert "runtime_pid" in dep.supernodes[str(silo)]
    _wait_rounds(kafka_bootstrap, model, 1, timeout_s=90)
    log = deployment / "fl" / "logs" / f"runtime-{silo}.log"

    # Execute: a task the SuperNode withdrew (its token is refused, as after a run stops)
    # ends that task only; Flower's own retry logic would SIGINT this very process
    address = f"127.0.0.1:{dep.supernodes[str(silo)]['port']}"
    assert run_task(address, "a-withdrawn-token") is False

    # Execute: the silo topic disappears, so the ClientApp raises; then data comes back
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    _wait_for(lambda: "task failed" in log.read_text(), "a failed task", timeout_s=60)
    _recreate(kafka_bootstrap, silo)
    produce_frames(kafka_bootstrap, topic, str(silo), synthetic_frames(silo, spec, ROWS, seed=3))
    docs = _wait_rounds(kafka_bootstrap, model, 2, timeout_s=90)

    # Assert: the same runtime process failed one task, then trained round 2
    text = log.read_text()
    assert "does not exist" in text
    assert [d["round"] for d in docs[:2]] == [1, 2]
    assert docs[1]["silos"][str(silo)]["rows"] == ROWS
    status = processes.status(deployment, with_metrics=False)
    assert status is not None and status.processes[f"runtime-{silo}"]  # pid of `up`: alive
    assert len(read_metrics(kafka_bootstrap, model)) >= 2
