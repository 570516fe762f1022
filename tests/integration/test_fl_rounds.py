"""Federated rounds on the real broker and REAL Flower (1 SuperLink + 2 SuperNodes).

Proves: increasing round numbers on fl.model.global; prequential global ROC AUC well above
0.5 on learnable data; each client read only its own silo topic; replies carry no raw
rows; a restarted ServerApp resumes from the published model.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

import topics
from app.fl import processes
from app.fl.kafka_io import produce_frames, read_metrics, read_models, silo_group
from app.fl.synthetic import synthetic_frames
from app.kafka.clients import make_consumer
from app.model.frame import decode_model
from tests.integration.fl_support import run_config, seed_silos, silo_ids, start_flower, wait_rounds

pytestmark = pytest.mark.integration

ROWS_PER_ROUND = 1000


@pytest.mark.parametrize("warm", [True, False], ids=["warm-runtime", "process-per-message"])
def test_rounds_publish_learn_isolate_and_resume(
    kafka_bootstrap: str, unique: str, deployment: Path, warm: bool
) -> None:
    # Prepare: two silos with learnable, shifted data for 3 rounds each
    silos = silo_ids(unique, 100, 800, n=2)
    spec, model = f"spec-{unique}", f"fl-test-{unique}"
    seed_silos(kafka_bootstrap, silos, spec, 3 * ROWS_PER_ROUND, frame_rows=250)
    config = run_config(spec, model, min_nodes=2, max_rows_per_round=ROWS_PER_ROUND,
                        local_epochs=5, lr=0.01, batch_size=64, hidden="16,8",
                        round_timeout=60.0, idle_backoff_max=2.0)  # fmt: skip

    # Execute: deploy, let 3 rounds run continuously
    dep = start_flower(deployment, kafka_bootstrap, silos, config, warm_clients=warm)
    # 240 s: a process-per-message run at load 10-15 published no round in 120 s (each
    # message starts a Python process that imports JAX; seen 2026-12-02)
    first = wait_rounds(kafka_bootstrap, model, 3, timeout_s=240)

    # Assert: increasing rounds, learning, isolation, no raw rows
    assert [d["round"] for d in first[:3]] == [1, 2, 3]
    assert first[2]["global"]["roc_auc"] > 0.75, first[2]["global"]
    assert first[2]["global"]["roc_auc"] > first[0]["global"]["roc_auc"]
    for doc in first[:3]:
        assert sorted(doc["silos"]) == sorted(str(s) for s in silos)
        for silo, entry in doc["silos"].items():
            assert entry["topic"] == topics.silo_batches(int(silo))
            assert entry["rows"] == ROWS_PER_ROUND
            # a reply's size does not depend on the rows: far fewer values than one
            # round's rows x features, and the same for every silo and round
            assert entry["reply_values"] == first[0]["silos"][silo]["reply_values"]
            assert entry["reply_values"] < ROWS_PER_ROUND * 8
    for silo in silos:  # each silo's group committed on its own topic only
        own, other = topics.silo_batches(silo), topics.silo_batches(silos[1 - silos.index(silo)])
        consumer = make_consumer(kafka_bootstrap, silo_group(model, silo))
        deadline = time.monotonic() + 60  # commits follow the server's confirmation
        try:
            while True:
                tps = [TopicPartition(own, 0), TopicPartition(other, 0)]
                got = consumer.committed(tps, timeout=10)
                if got[0].offset == 3 * ROWS_PER_ROUND // 250 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            consumer.close()
        assert got[0].offset == 3 * ROWS_PER_ROUND // 250
        assert got[1].offset < 0
    rounds = [decode_model(raw).meta.round for raw in read_models(kafka_bootstrap, model)]
    assert rounds[:3] == [1, 2, 3]

    # Execute: restart the ServerApp (stop the run, submit a new one), then new data arrives
    processes.stop_run(dep, dep.run_ids[-1])
    time.sleep(2)
    restart_from = len(read_metrics(kafka_bootstrap, model))
    dep.run_ids.append(processes.submit_run(dep, {**config, "bootstrap": kafka_bootstrap}))
    for silo in silos:
        frames = synthetic_frames(silo, spec, ROWS_PER_ROUND, frame_rows=250, seed=7)
        produce_frames(kafka_bootstrap, topics.silo_batches(silo), str(silo), frames)
    after = wait_rounds(kafka_bootstrap, model, restart_from + 1, timeout_s=90)

    # Assert: the new ServerApp continued the round numbers and the learned model
    resumed = after[restart_from]
    assert resumed["round"] == after[restart_from - 1]["round"] + 1
    # whole-run figures continue across the restart (restored from the model frame)
    before_whole = after[restart_from - 1]["whole_run"]
    assert resumed["whole_run"]["rounds"] == before_whole["rounds"] + 1
    assert (
        resumed["whole_run"]["global"]["labelled"]
        == before_whole["global"]["labelled"] + resumed["global"]["labelled"]
    )
    assert set(resumed["whole_run"]["silos"]) == {str(s) for s in silos}
    assert resumed["participation"]["trained"] == 2
    assert resumed["global"]["roc_auc"] > 0.75, resumed["global"]
    models = [decode_model(raw).meta.round for raw in read_models(kafka_bootstrap, model)]
    assert models == sorted(models) and len(set(models)) == len(models)
    status = processes.status(deployment)
    assert status is not None and all(status.processes.values())
    runtimes = {name for name in status.processes if name.startswith("runtime-")}
    assert runtimes == ({f"runtime-{s}" for s in silos} if warm else set())
    if warm:  # every round of a silo ran in its one runtime process
        for silo in silos:
            log = (deployment / "fl" / "logs" / f"runtime-{silo}.log").read_text()
            assert log.count("task completed") >= len(after)
