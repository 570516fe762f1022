"""``fedstream status`` and ``fedstream exporter`` after N events and one REAL federated round.

Known state, on a broker of this test alone (the Flower side uses the catalogue's own topic
names, not a namespace): N synthetic events with the invalid set among them, processed by a
real worker for 2 silos; one round on real Flower (SuperLink, two SuperNodes and their warm
runtimes, ``num-rounds`` 1) training on what the worker wrote; then a few more events the
worker scores with that round's model. ``status --json`` must report each figure of that
state, and the exporter's scrape the same figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from app.features.frames import decode_batch
from app.ports import free_port
from app.produce.synthetic import SyntheticBank, invalid_events
from app.stream.harness import WorkerProcess, create_topics, produce_records, read_topic
from tests.integration.fl_support import run_config, start_flower, wait_rounds
from tests.integration.stream_support import default_spec
from tests.integration.test_metrics import _scrape
from topics import CUSTOMERS, TRANSACTIONS, WORKER_APP_ID, dlq, silo_batches

SILOS = (0, 1)
TOPIC = {"customer": CUSTOMERS, "transaction": TRANSACTIONS}
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _records(events: Any) -> list[tuple[str, bytes, bytes]]:
    return [
        (TOPIC[kind], key.encode(), raw if isinstance(raw, bytes) else orjson.dumps(raw))
        for kind, key, raw, *_hint in events
    ]


def _cli(bootstrap: str, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "--bootstrap", bootstrap, "--silos", str(len(SILOS)),
         "status", *args],
        capture_output=True, text=True, env=_env(model), timeout=300, check=False,
    )  # fmt: skip


def _env(model: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()  # the broker's credentials stay (secure)
           if not k.startswith("FEDSTREAM_") or k == "FEDSTREAM_KAFKA_CLIENTS"}  # fmt: skip
    return {**env, "FEDSTREAM_MODEL_NAME": model}


def _status(bootstrap: str, model: str, until: Any, what: str) -> dict[str, Any]:
    """``status --json`` again until ``until(doc)`` holds (generous deadline)."""
    deadline = time.monotonic() + 120
    while True:
        result = _cli(bootstrap, model, "--json", "--interval", "0.5")
        assert result.returncode == 0, result.stderr
        doc: dict[str, Any] = orjson.loads(result.stdout)
        if until(doc):
            return doc
        assert time.monotonic() < deadline, f"status never showed {what}: {doc}"
        time.sleep(1)


def _rows_per_silo(bootstrap: str) -> dict[str, int]:
    frames = {s: read_topic(bootstrap, silo_batches(s)) for s in SILOS}
    return {str(s): sum(decode_batch(r.value).meta.rows for r in rs) for s, rs in frames.items()}


def _exporter(bootstrap: str, model: str, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    log = (tmp / "exporter.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--bootstrap", bootstrap, "--silos", str(len(SILOS)),
         "exporter", "--port", str(port), "--interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=_env(model),
    )  # fmt: skip


def _scrape_until(port: int, until: Any, proc: subprocess.Popen[bytes]) -> Sample:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the exporter exited"
        try:
            got = _scrape(port)
            if until(got):
                return got
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "the exporter never showed the round"
        time.sleep(1)


def test_status_and_exporter_after_events_and_one_real_round(
    fresh_broker: str, deployment: Path
) -> None:
    # Prepare: N events (the invalid set among them) on a broker of this test, no worker yet
    bootstrap, model = fresh_broker, f"m{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, SILOS, 4, "")
    bank = SyntheticBank(customers=60, silos=len(SILOS), seed=11).events(n_events=2_400)
    first, later = list(islice(bank, 2_000)), list(bank)
    bad = invalid_events(seed=3)
    sent = produce_records(bootstrap, _records(first) + _records(bad))
    spec = default_spec()

    # Execute + Assert: not drained without a worker (exit 2 at the timeout, one line)
    behind = _cli(bootstrap, model, "--wait-drained", "--timeout", "1")
    assert behind.returncode == 2, behind.stderr
    assert "not drained" in behind.stderr and len(behind.stderr.splitlines()) == 1

    worker = WorkerProcess(bootstrap, "", deployment / "worker", len(SILOS),
                           args=["--batch-ms", "300", "--store", "memory://"],
                           env={"FEDSTREAM_MODEL_NAME": model})  # fmt: skip
    exporter_port = free_port()
    with worker:
        drained = _cli(bootstrap, model, "--wait-drained", "--timeout", "180")
        assert drained.returncode == 0, drained.stderr + worker.log_tail()

        # Execute: one real federated round on the worker's batches (fewer rows than sent)
        config = run_config(spec.version, model, n_features=spec.n_features, num_rounds=1,
                            min_nodes=2, max_rows_per_round=600, min_rows=10,
                            round_timeout=60.0)  # fmt: skip
        start_flower(deployment, bootstrap, SILOS, config, insecure=True)
        (round_doc,) = wait_rounds(bootstrap, model, 1, timeout_s=180)

        # Execute: more events; the worker scores them with the round's model
        chunks = [later[i : i + 50] for i in range(0, len(later), 50)]
        produce_records(bootstrap, _records(chunks.pop(0)))

        def scored_with_round(doc: dict[str, Any]) -> bool:
            if doc["model"]["round"] == 1 or not chunks:
                return doc["model"]["round"] == 1
            produce_records(bootstrap, _records(chunks.pop(0)))  # the follower is not there yet
            return False

        _status(bootstrap, model, scored_with_round, "the model of round 1 in use")
        _cli(bootstrap, model, "--wait-drained", "--timeout", "180")
        rows = _rows_per_silo(bootstrap)
        read = {s: int(round_doc["silos"][s]["rows"]) for s in rows}

        # the silos commit what the server confirmed (its confirm-only message at the end)
        doc = _status(
            bootstrap, model,
            lambda d: all(d["silos"][s]["rows_waiting"] == rows[s] - read[s] for s in rows)
            and d["worker"]["drained"],
            "each silo's rows waiting after the round",
        )  # fmt: skip
        text = _cli(bootstrap, model, "--interval", "0.2")
        exporter = _exporter(bootstrap, model, exporter_port, deployment)
        try:
            scraped = _scrape_until(
                exporter_port,
                lambda g: (
                    g.get(("fedstream_fl_round", ())) == 1
                    and ("fedstream_silo_rows_waiting", (("silo", "1"),)) in g
                ),
                exporter,
            )
        finally:
            exporter.terminate()
            exporter.wait(30)

    # Assert: status --json against the known state
    fl, w = doc["federated"], doc["worker"]
    assert w["group"] == WORKER_APP_ID and w["members"] == 1, w
    assert w["drained"] is True and w["lag"] == 0
    assert sum(p["end"] for p in w["partitions"]) >= sent
    assert sum(doc["dlq"].values()) == len(bad)
    assert doc["dlq"][dlq(TRANSACTIONS)] == sum(b[0] == "transaction" for b in bad)
    assert doc["catalogue"]["missing"] == []
    assert all(rows[s] > read[s] > 0 for s in rows), (rows, read)
    for s in rows:
        assert doc["silos"][s]["rows_waiting"] == rows[s] - read[s]
        assert not doc["silos"][s]["rows_estimated"]
    assert fl["round"] == 1 and fl["model_version"] == round_doc["model_version"]
    assert fl["participation"]["trained"] == 2 and fl["participation"]["replied"] == 2
    glob = round_doc["global"]
    assert fl["global"] == glob and glob["labelled"] > 0 and glob["log_loss"] is not None
    # ~0.5% fraud: the first frames a round reads (timing decides their size) may hold none;
    # then there is no AUC, neither in fl.metrics nor in status, and no gauge (below)
    assert (glob["roc_auc"] is None) == (glob["positives"] in (0, glob["labelled"])), glob
    assert fl["silos"] == {s: round_doc["silos"][s]["roc_auc"] for s in rows}
    assert {s: v["read"] for s, v in fl["silo_rows"].items()} == read
    assert fl["whole_run"]["rounds"] == 1
    assert fl["round_seconds"] == round_doc["round_seconds"] > 0
    assert doc["model"] == {"round": 1, "version": round_doc["model_version"]}
    assert text.returncode == 0, text.stderr
    assert f"round 1 ({round_doc['model_version']})" in text.stdout
    assert "2 of 2 silos trained" in text.stdout and "lag 0 (drained)" in text.stdout

    # Assert: the exporter's scrape says the same
    assert scraped[("fedstream_round_seconds_count", ())] == 1
    assert scraped[("fedstream_round_seconds_sum", ())] == round_doc["round_seconds"]
    assert scraped[("fedstream_round_silos", (("state", "trained"),))] == 2
    assert scraped.get(("fedstream_prequential_roc_auc", (("scope", "global"),))) == glob["roc_auc"]
    for s in rows:
        entry = round_doc["silos"][s]
        # a silo without a positive row in the round has no AUC: no gauge, not a made-up one
        auc = scraped.get(("fedstream_prequential_roc_auc", (("scope", f"silo {s}"),)))
        assert auc == entry["roc_auc"], (s, entry)
        assert scraped[("fedstream_round_silo_rows", (("kind", "read"), ("silo", s)))] == read[s]
        assert (
            scraped[("fedstream_round_silo_rows", (("kind", "trained"), ("silo", s)))]
            == (entry["examples"])
        )
        assert scraped[("fedstream_run_silo_rows", (("silo", s),))] == read[s]
        assert scraped[("fedstream_silo_rows_waiting", (("silo", s),))] == rows[s] - read[s]
    lags = [v for k, v in scraped.items() if k[0] == "fedstream_group_lag"]
    assert len(lags) == 8 and not any(lags)
    assert (
        scraped[("fedstream_dlq_records", (("topic", dlq(TRANSACTIONS)),))]
        == (doc["dlq"][dlq(TRANSACTIONS)])
    )
