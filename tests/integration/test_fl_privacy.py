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

from app.fl import processes
from app.fl.kafka_io import read_metrics
from app.fl.privacy import PrivacyLedger
from tests.integration.fl_support import (
    committed_frames,
    run_config,
    seed_silos,
    silo_ids,
    start_flower,
    wait_rounds,
)

pytestmark = pytest.mark.integration

ROWS = 500
FRAME_ROWS = 250


def test_epsilon_is_published_per_round_and_training_stops_before_the_budget(
    kafka_bootstrap: str,
    unique: str,
    deployment: Path,
) -> None:
    # Prepare: data for four rounds, DP noise 1.0, a budget that allows two rounds
    (silo,) = silo_ids(unique, 860, 40)
    spec, model = f"spec-{unique}", f"fl-dp-{unique}"
    seed_silos(kafka_bootstrap, [silo], spec, 4 * ROWS, frame_rows=FRAME_ROWS)
    config = run_config(spec, model, max_rows_per_round=ROWS, round_wait=0.0, dp_clip=1.0,
                        dp_noise=1.0, dp_delta=1e-5, dp_max_epsilon=8.0)  # fmt: skip
    expected = PrivacyLedger(1.0, 1.0, 1e-5, 1)
    epsilons = [expected.record_round()["epsilon"] for _ in range(3)]
    assert epsilons[1] < 8.0 < epsilons[2]

    # Execute
    dep = start_flower(deployment, kafka_bootstrap, [silo], config)
    docs = wait_rounds(kafka_bootstrap, model, 2, timeout_s=120)
    time.sleep(15)  # time for a third round, if the server went on

    # Assert: two rounds with the accountant's epsilon, then no more; rows left unread
    docs = read_metrics(kafka_bootstrap, model)
    assert [d["round"] for d in docs] == [1, 2]
    for doc, eps in zip(docs, epsilons, strict=False):
        privacy = doc["privacy"]
        assert math.isclose(privacy["epsilon"], eps, rel_tol=1e-9)
        assert privacy["delta"] == 1e-5 and privacy["max_epsilon"] == 8.0
    assert [d["privacy"]["releases"] for d in docs] == [1, 2]
    assert committed_frames(kafka_bootstrap, model, silo) == 2 * ROWS // FRAME_ROWS

    # Execute: a new ServerApp with the same budget, then one with a larger budget
    processes.stop_run(dep, dep.run_ids[-1])
    dep.run_ids.append(processes.submit_run(dep, {**config, "bootstrap": kafka_bootstrap}))
    time.sleep(15)
    same_budget = read_metrics(kafka_bootstrap, model)
    processes.stop_run(dep, dep.run_ids[-1])
    larger = {**config, "dp-max-epsilon": 10.0, "bootstrap": kafka_bootstrap}
    dep.run_ids.append(processes.submit_run(dep, larger))
    after = wait_rounds(kafka_bootstrap, model, 3, timeout_s=90)

    # Assert: the resumed server counted the two releases before spending more
    assert len(same_budget) == 2
    assert after[2]["round"] == 3 and after[2]["privacy"]["releases"] == 3
    assert math.isclose(after[2]["privacy"]["epsilon"], epsilons[2], rel_tol=1e-9)
