"""Bring your own stream: a pipeline in a file, a CSV as it comes, broker, worker, Flower.

The pipeline (``pipelines/card_export.py``) is loaded by path by every process. The CSV
has unusual column names, no key column and a relative time. No spec knob anywhere: the
worker runs the pipeline and publishes its spec, Flower trains on the spec it finds on
``features.spec``. Rows equal the in-memory run of the same pipeline; asking for another
pipeline's spec is a one-line error naming both. The pipeline trains its own Flax NNX
module: Flower imports it from the run config, every model frame names it and the
worker's model hook scores the rows with it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.fl import processes
from app.fl.kafka_io import read_models
from app.fl.spec_source import published_specs
from app.kafka.broker import LocalBroker
from app.model.exact_metrics import exact_roc_auc
from app.model.frame import decode_model
from app.model.scoring import JaxScorer
from app.model.training import predict
from app.pipeline.load import load_pipeline
from app.pipeline.runner import run_pipeline
from app.pipeline.spec import pipeline_spec
from app.ports import free_port
from app.produce.csv_replay import CsvReplay
from app.settings import default_cache_dir
from app.stream.harness import (
    FEDSTREAM,
    WorkerProcess,
    create_topics,
    produce_records,
    wait_committed,
    worker_group,
)
from app.stream.model_follower import load_live_model
from tests.integration.fl_support import wait_rounds
from tests.integration.stream_support import act_on, collect_output, encode, records
from topics import TRANSACTIONS

pytestmark = pytest.mark.integration

PIPELINE = Path(__file__).parent / "pipelines" / "card_export.py"
SILOS = (0, 1)


def _csv(path: Path, rows: int = 1_200) -> None:
    """Relative ``Step`` seconds, no key, a score that tells fraud, a text column."""
    rng = random.Random(11)
    lines = ["Step,TxScore,Amount,isFraud,Merchant Name"]
    for i in range(rows):
        fraud = rng.random() < 0.2
        score = rng.gauss(1.5 if fraud else -0.5, 0.7)
        lines.append(f"{i * 13},{score:.3f},{rng.uniform(1, 400):.2f},{int(fraud)},shop {i % 5}")
    path.write_text("\n".join(lines) + "\n")


def _row_multiset(rows: dict[int, Counter[Any]]) -> dict[int, Counter[tuple[bytes, float]]]:
    out: dict[int, Counter[tuple[bytes, float]]] = {}
    for silo, counter in rows.items():
        out[silo] = Counter()
        for (x, y, _ts), n in counter.items():
            out[silo][(x, y)] += n
    return out


def test_a_pipeline_file_runs_a_raw_csv_through_worker_and_flower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: an own broker (Flower reads the plain topic names), the CSV and its replay
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(tmp_path / "broker", cache, port=free_port(), controller_port=free_port())
    broker.start(timeout_s=180)
    act_on(broker, monkeypatch)  # secure, as users run it
    fl_root = tmp_path / "fl-root"
    try:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, SILOS, 4, "")
        csv_path = tmp_path / "Card Export.csv"
        _csv(csv_path)
        replay = CsvReplay(csv_path, n_silos=len(SILOS), start=1_709_251_200.0)
        events = [encode(kind, key, value) for kind, key, value in replay.events()]
        assert any(n.startswith("key: no key column") for n in replay.notes), replay.notes
        pipeline = load_pipeline(str(PIPELINE))
        spec = pipeline_spec(pipeline)
        in_memory = run_pipeline(pipeline, [records(events, "")])
        want = {s: Counter((x.tobytes(), y) for _id, x, y in in_memory.rows[s]) for s in SILOS}

        # Execute: the worker runs the pipeline file
        produce_records(bootstrap, records(events, ""))
        worker = WorkerProcess(bootstrap, "", tmp_path / "w", len(SILOS), log_level="INFO",
                               args=("--batch-ms", "300", "--pipeline", str(PIPELINE)))  # fmt: skip
        with worker:
            try:
                wait_committed(bootstrap, worker_group(""), [TRANSACTIONS], worker=worker)
            except BaseException:
                print(worker.log_tail(200))
                raise
            assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
        got = collect_output(bootstrap, "", SILOS)
        published = published_specs(bootstrap)

        # Assert: the pipeline's rows, its spec on the frames and on features.spec
        assert sum(c.total() for c in want.values()) == 1_200
        assert _row_multiset(got.rows) == want
        assert got.spec_versions == {spec.version}
        assert [(d["version"], d["columns"], d["pipeline"]) for d in published] == [
            (spec.version, list(spec.columns), "card-export")
        ]

        # Execute: ask Flower for the built-in fraud pipeline's spec instead
        env = {**os.environ, "FEDSTREAM_DATA_DIR": str(fl_root), "FEDSTREAM_SILOS": "2"}
        wrong = subprocess.run(
            [str(FEDSTREAM), "--bootstrap", bootstrap, "fl", "up", "--insecure",
             "--pipeline", "fraud"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

        # Assert: one line that names both specs, and nothing started
        lines = [ln for ln in wrong.stderr.splitlines() if ln.strip()]
        assert wrong.returncode == 1, wrong.stderr
        assert len(lines) == 1 and "feature spec mismatch" in lines[0], wrong.stderr
        assert spec.version in lines[0] and "pipeline fraud" in lines[0], lines[0]
        assert processes.FLDeployment.load(fl_root) is None

        # Execute: federated training with no spec knob (the ServerApp reads features.spec),
        # the pipeline's own module and strategy in the run config (as `fl up --pipeline`)
        model = "card-export-scorenet"
        assert pipeline.federation is not None
        own_model = pipeline.federation.run_config()
        processes.up(
            data_dir=fl_root, bootstrap=bootstrap, silo_ids=SILOS,
            superlink_port=free_port(), supernode_base_port=free_port(span=2),
            run_config={**own_model, "model-name": model, "min-nodes": 2, "lr": 0.01,
                        "max-rows-per-round": 10_000,
                        "round-rows": 200, "first-round-rows": 100, "round-wait": 5.0,
                        "min-rows": 50, "local-steps": 50, "round-timeout": 60.0,
                        "idle-backoff-max": 2.0},
            insecure=True,
        )  # fmt: skip
        docs = wait_rounds(bootstrap, model, 1, timeout_s=240)

        # Assert: both silos trained on the pipeline's rows, the model carries its spec
        trained = {s: sum(d["silos"].get(str(s), {}).get("rows", 0) for d in docs) for s in SILOS}
        assert all(trained[s] > 0 for s in SILOS), docs
        frames = [decode_model(raw) for raw in read_models(bootstrap, model)]
        assert frames and {f.meta.spec_version for f in frames} == {spec.version}
        assert {f.meta.n_features for f in frames} == {spec.n_features}

        # Assert: the frames name the pipeline's module; the worker's hook scores with it
        assert {f.meta.config["module"] for f in frames} == {f"{PIPELINE.resolve()}:ScoreNet"}
        live = load_live_model(read_models(bootstrap, model)[-1], spec.version, spec.n_features)
        assert isinstance(live.scorer, JaxScorer)
        X = np.stack([x for s in SILOS for _id, x, _y in in_memory.rows[s]])
        y = np.array([y for s in SILOS for _id, _x, y in in_memory.rows[s]])
        last = frames[-1]
        scores = live.scorer.predict(X)
        np.testing.assert_allclose(
            scores,
            predict(last.arrays, X, last.meta.model_config(), last.mean, last.std),
            rtol=1e-6,
        )
        assert live.scorer.score(X[0]) == pytest.approx(float(scores[0]), rel=1e-5)
        assert exact_roc_auc(scores, y) > 0.75  # TxScore tells fraud: the module learnt it
    finally:
        processes.down(fl_root)
        broker.stop()
