"""``fedstream status`` against a known state on the real broker, and ``--wait-drained``.

Known state: N synthetic events (some invalid) in a fresh namespace, processed by a real
worker; silo 0's Flower client has read and committed some frames (the real SiloReader);
one round document on fl.metrics as the server writes it (with the whole-run and
participation fields; older servers send fewer, which status tolerates).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from app.fl.kafka_io import SiloReader, silo_group
from app.stream.harness import WorkerProcess, end_offsets, produce_records
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    new_namespace,
    records,
)
from tests.integration.test_stream_worker import synthetic_phases
from topics import CUSTOMERS, FL_METRICS, TRANSACTIONS, WORKER_APP_ID, dlq, namespaced, silo_batches


def _status(bootstrap: str, ns: str, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDSTREAM_NAMESPACE": ns, "FEDSTREAM_MODEL_NAME": model}
    cmd = [sys.executable, "-m", "app", "--bootstrap", bootstrap, "--silos", str(len(SILOS)),
           "status", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def _round_doc(model: str) -> dict[str, Any]:
    return {
        "round": 1, "time": 1.0e9, "model_version": "1-abcdef", "round_seconds": 2.5,
        "global": {"roc_auc": 0.81, "pr_auc": 0.4, "rows": 900, "labelled": 900},
        "silos": {"0": {"roc_auc": 0.8, "rows": 500}, "1": {"roc_auc": 0.82, "rows": 400}},
        "idle_silos": [2],
        "participation": {"policy": "wait", "replied": 3, "trained": 2, "rows": {"0": 500}},
        "whole_run": {"rounds": 1, "global": {"roc_auc": 0.81, "rows": 900}, "silos": {}},
    }  # fmt: skip


def test_status_json_and_wait_drained(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare: inputs on the broker, no worker yet
    ns = new_namespace(kafka_bootstrap, "status")
    model = f"m{uuid.uuid4().hex[:6]}"
    phases = synthetic_phases(customers=100, n_events=4_000)
    sent = [e for phase in phases for e in phase]
    produce_records(kafka_bootstrap, records(sent, ns))
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]

    # Execute + Assert: not drained without a worker (exit 2 at the timeout)
    behind = _status(kafka_bootstrap, ns, model, "--wait-drained", "--timeout", "1")
    assert behind.returncode == 2, behind.stderr
    assert "not drained" in behind.stderr and len(behind.stderr.splitlines()) == 1

    worker = WorkerProcess(
        kafka_bootstrap,
        ns,
        tmp_path,
        len(SILOS),
        args=["--batch-ms", "300", "--store", "memory://"],
    )
    with worker:
        drained = _status(kafka_bootstrap, ns, model, "--wait-drained", "--timeout", "180")
        assert drained.returncode == 0, drained.stderr + worker.log_tail()

        # the state status should report: silo 0 trains on part of its frames
        spec = default_spec()
        topic0 = namespaced(silo_batches(0), ns)
        with SiloReader(kafka_bootstrap, topic0, silo_group(model, 0)) as reader:
            batch = reader.read(300, spec.version, spec.n_features)
            reader.commit(batch)
        metrics_topic = namespaced(FL_METRICS, ns)
        produce_records(
            kafka_bootstrap, [(metrics_topic, model.encode(), orjson.dumps(_round_doc(model)))]
        )

        result = _status(kafka_bootstrap, ns, model, "--json", "--interval", "0.5")
        text = _status(kafka_bootstrap, ns, model, "--interval", "0.2")
    worker.proc and worker.stop(signal.SIGTERM)

    # Assert
    assert result.returncode == 0, result.stderr
    doc = orjson.loads(result.stdout)
    ends = end_offsets(kafka_bootstrap, inputs)
    assert sum(ends.values()) == len(sent)
    w = doc["worker"]
    assert w["group"] == namespaced(WORKER_APP_ID, ns) and w["members"] == 1
    assert w["drained"] is True and w["lag"] == 0
    assert {(p["topic"], p["partition"]): p["end"] for p in w["partitions"]} == ends
    assert all(p["committed"] == p["end"] for p in w["partitions"] if p["end"] > 0)
    out = collect_output(kafka_bootstrap, ns)
    assert sum(doc["dlq"].values()) == len(out.dead_letters) > 0
    assert doc["dlq"][namespaced(dlq(TRANSACTIONS), ns)] == sum(
        d["topic"] == namespaced(TRANSACTIONS, ns) for d in out.dead_letters
    )
    for silo in SILOS:
        total = out.rows[silo].total()
        read = batch.X.shape[0] if silo == 0 else 0
        waiting = doc["silos"][str(silo)]
        assert waiting["rows_waiting"] == total - read and not waiting["rows_estimated"]
    assert batch.X.shape[0] > 0
    assert doc["catalogue"]["missing"] == []
    assert doc["model"] == {"round": None, "version": None}  # no model published
    fl = doc["federated"]
    assert fl["round"] == 1 and fl["model_version"] == "1-abcdef"
    assert fl["participation"]["trained"] == 2 and fl["whole_run"]["rounds"] == 1
    assert fl["silos"] == {"0": 0.8, "1": 0.82}
    assert doc["events_per_s"]["interval_s"] > 0
    assert text.returncode == 0, text.stderr
    assert "round 1 (1-abcdef)" in text.stdout and "2 of 3 silos trained" in text.stdout
    assert "lag 0 (drained)" in text.stdout
