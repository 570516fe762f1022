"""DP accounting on REAL Flower: epsilon per round in fl.metrics, a stop before max epsilon.

One silo, server-side fixed clipping with noise multiplier 1.0 at delta 1e-5: each round
is one Gaussian release (epsilon 4.73, 7.08, 9.01, ... by Flower's RDP accountant). With
``dp-max-epsilon`` 8 the server must publish exactly two rounds although data for four
is waiting; a restarted ServerApp counts the two earlier releases (it stops at once), and
with a budget of 10 it trains round 3 at the composed epsilon.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

import topics
from app.fl import processes
from app.fl.kafka_io import ensure_topics, produce_frames, read_metrics, silo_group
from app.fl.privacy import PrivacyLedger
from app.fl.synthetic import synthetic_frames
from app.kafka.clients import make_consumer
from app.ports import free_port
from tests.integration.test_fl_rounds import _wait_rounds, deployment  # noqa: F401

pytestmark = pytest.mark.integration

ROWS = 500
FRAME_ROWS = 250


def _committed_frames(bootstrap: str, model: str, silo: int) -> int:
    consumer = make_consumer(bootstrap, silo_group(model, silo))
    try:
        tp = TopicPartition(topics.silo_batches(silo), 0)
        return int(consumer.committed([tp], timeout=10)[0].offset)
    finally:
        consumer.close()


def test_epsilon_is_published_per_round_and_training_stops_before_the_budget(
    kafka_bootstrap: str,
    unique: str,
    deployment: Path,  # noqa: F811
) -> None:
    # Prepare: data for four rounds, DP noise 1.0, a budget that allows two rounds
    silo = 860 + int(unique[:4], 16) % 40
    spec, model = f"spec-{unique}", f"fl-dp-{unique}"
    ensure_topics(kafka_bootstrap, [silo])
    frames = synthetic_frames(silo, spec, 4 * ROWS, frame_rows=FRAME_ROWS)
    produce_frames(kafka_bootstrap, topics.silo_batches(silo), str(silo), frames)
    run_config = {"num-rounds": 0, "min-nodes": 1, "max-rows-per-round": ROWS, "min-rows": 100,
                  "spec-version": spec, "n-features": 8, "hidden": "8", "model-name": model,
                  "round-timeout": 30.0, "idle-backoff-max": 1.0, "round-wait": 0.0,
                  "dp-clip": 1.0, "dp-noise": 1.0, "dp-delta": 1e-5,
                  "dp-max-epsilon": 8.0}  # fmt: skip
    expected = PrivacyLedger(1.0, 1.0, 1e-5, 1)
    epsilons = [expected.record_round()["epsilon"] for _ in range(3)]
    assert epsilons[1] < 8.0 < epsilons[2]

    # Execute
    dep = processes.up(
        data_dir=deployment,
        bootstrap=kafka_bootstrap,
        silo_ids=[silo],
        superlink_port=free_port(),
        supernode_base_port=free_port(),
        run_config=run_config,
    )
    docs = _wait_rounds(kafka_bootstrap, model, 2, timeout_s=120)
    time.sleep(15)  # time for a third round, if the server went on

    # Assert: two rounds with the accountant's epsilon, then no more; rows left unread
    docs = read_metrics(kafka_bootstrap, model)
    assert [d["round"] for d in docs] == [1, 2]
    for doc, eps in zip(docs, epsilons, strict=False):
        privacy = doc["privacy"]
        assert math.isclose(privacy["epsilon"], eps, rel_tol=1e-9)
        assert privacy["delta"] == 1e-5 and privacy["max_epsilon"] == 8.0
    assert [d["privacy"]["releases"] for d in docs] == [1, 2]
    assert _committed_frames(kafka_bootstrap, model, silo) == 2 * ROWS // FRAME_ROWS

    # Execute: a new ServerApp with the same budget, then one with a larger budget
    processes.stop_run(dep, dep.run_ids[-1])
    dep.run_ids.append(processes.submit_run(dep, {**run_config, "bootstrap": kafka_bootstrap}))
    time.sleep(15)
    same_budget = read_metrics(kafka_bootstrap, model)
    processes.stop_run(dep, dep.run_ids[-1])
    larger = {**run_config, "dp-max-epsilon": 10.0, "bootstrap": kafka_bootstrap}
    dep.run_ids.append(processes.submit_run(dep, larger))
    after = _wait_rounds(kafka_bootstrap, model, 3, timeout_s=90)

    # Assert: the resumed server counted the two releases before spending more
    assert len(same_budget) == 2
    assert after[2]["round"] == 3 and after[2]["privacy"]["releases"] == 3
    assert math.isclose(after[2]["privacy"]["epsilon"], epsilons[2], rel_tol=1e-9)
