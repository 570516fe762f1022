"""Helpers of the tests that run REAL Flower (SuperLink, SuperNodes, warm runtimes).

One place for what every such test does: pick silo ids of its own on the shared broker,
fill their topics with learnable frames, start the deployment on free ports
(``processes.up``, as ``fedstream fl up`` does), wait for published rounds, and tear
everything down with the logs' tails printed (the ``deployment`` fixture in conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

import topics
from app.fl import processes
from app.fl.kafka_io import ensure_topics, produce_frames, read_metrics, silo_group
from app.fl.synthetic import synthetic_frames
from app.kafka.clients import make_consumer
from app.ports import free_port

__all__ = [
    "committed_frames",
    "run_config",
    "seed_silos",
    "silo_ids",
    "start_flower",
    "tear_down",
    "wait_rounds",
]


def silo_ids(unique: str, base: int, spread: int, n: int = 1) -> list[int]:
    """``n`` consecutive silo ids of one test, from ``base`` (a range per test file)."""
    first = base + int(unique[:4], 16) % spread
    return [first + i for i in range(n)]


def run_config(spec: str, model: str, **overrides: Any) -> dict[str, Any]:
    """A small, fast run config (8 features, one hidden layer of 8); keys as Flower's."""
    base: dict[str, Any] = {
        "num-rounds": 0, "min-nodes": 1, "max-rows-per-round": 500, "min-rows": 100,
        "spec-version": spec, "n-features": 8, "hidden": "8", "model-name": model,
        "round-timeout": 30.0, "idle-backoff-max": 1.0,
    }  # fmt: skip
    return {**base, **{k.replace("_", "-"): v for k, v in overrides.items()}}


def seed_silos(
    bootstrap: str,
    silos: Sequence[int],
    spec: str,
    rows: int,
    *,
    frame_rows: int = 500,
    seed: int = 0,
) -> None:
    """Create each silo's topic and write ``rows`` learnable rows to it."""
    ensure_topics(bootstrap, list(silos))
    for silo in silos:
        frames = synthetic_frames(silo, spec, rows, frame_rows=frame_rows, seed=seed)
        produce_frames(bootstrap, topics.silo_batches(silo), str(silo), frames)


def start_flower(
    data_dir: Path, bootstrap: str, silos: Sequence[int], config: dict[str, Any], **kwargs: Any
) -> processes.FLDeployment:
    """``processes.up`` on free ports (``kwargs``: warm_clients, insecure, supervise)."""
    return processes.up(
        data_dir=data_dir,
        bootstrap=bootstrap,
        silo_ids=list(silos),
        superlink_port=free_port(),
        supernode_base_port=free_port(span=len(silos)),
        run_config=config,
        **kwargs,
    )


def wait_rounds(bootstrap: str, model: str, n: int, timeout_s: float) -> list[dict[str, Any]]:
    """The ``fl.metrics`` documents of ``model`` once there are ``n``; fails at the timeout."""
    deadline = time.monotonic() + timeout_s
    docs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        docs = read_metrics(bootstrap, model)
        if len(docs) >= n:
            return docs
        time.sleep(2)
    raise AssertionError(f"only {len(docs)} of {n} rounds published in {timeout_s:.0f} s")


def committed_frames(bootstrap: str, model: str, silo: int) -> int:
    """Frames silo ``silo``'s Flower client committed (offset on its topic; < 0: none)."""
    consumer = make_consumer(bootstrap, silo_group(model, silo))
    try:
        tp = TopicPartition(topics.silo_batches(silo), 0)
        return int(consumer.committed([tp], timeout=10)[0].offset)
    finally:
        consumer.close()


def _dump_runtime_stacks(data_dir: Path) -> None:
    """Ask each warm runtime to log its threads' stacks (shows where a stuck task waits)."""
    dep = processes.FLDeployment.load(data_dir)
    for name, pid in (dep.pids() if dep else {}).items():
        if name.startswith("runtime-"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)


def tear_down(data_dir: Path, tail: int = 40) -> None:
    """Stop every Flower process of ``data_dir`` and print the end of each log."""
    _dump_runtime_stacks(data_dir)
    processes.down(data_dir)
    for log in sorted((data_dir / "fl" / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-tail:]
        print(f"--- {log.name}\n" + "\n".join(lines))
