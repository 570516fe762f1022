"""A CSV as it comes (odd column names, no key, relative time) through broker and worker.

No spec knob anywhere: the replay finds the columns and says what it found, the worker
turns the printed attrs into features and publishes its spec on ``features.spec``, and the
spec the federated side would choose (no ``spec-version``/``n-features``) is that one.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import orjson

from app.features.spec import FeatureSpec
from app.fl.spec_source import choose_spec, published_specs
from app.produce.csv_replay import CsvReplay
from app.stream.harness import WorkerProcess, produce_records, wait_committed, worker_group
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    encode,
    new_namespace,
    records,
    reference_rows,
)
from topics import CUSTOMERS, FEATURE_SPECS, TRANSACTIONS, namespaced


def _csv(path: Path, rows: int = 400) -> None:
    rng = random.Random(3)
    lines = ["Step,TxScore,Amount,isFraud,Merchant Name"]
    for i in range(rows):
        lines.append(f"{i * 37},{rng.uniform(-3, 3):.3f},{rng.uniform(1, 500):.2f},"
                     f"{int(rng.random() < 0.1)},shop {i % 7}")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def test_a_raw_csv_runs_through_the_worker_with_no_spec_knobs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare: the file, its replay (what `fedstream produce csv` does)
    path = tmp_path / "Raw Export.csv"
    _csv(path)
    replay = CsvReplay(path, start=1_709_251_200.0)  # 2024-03-01T00:00:00Z
    events = [encode(kind, key, value) for kind, key, value in replay.events()]
    assert any(n.startswith("key: no key column") for n in replay.notes)
    assert replay.attr_names == ["TxScore"]
    spec = default_spec(txn_attrs=replay.attr_names)
    want, _ref = reference_rows([events], spec)
    ns = new_namespace(kafka_bootstrap, "csv")
    env = {"FEDSTREAM_TXN_ATTRS": ",".join(replay.attr_names)}

    # Execute
    produce_records(kafka_bootstrap, records(events, ns))
    with WorkerProcess(kafka_bootstrap, ns, tmp_path / "w", len(SILOS), env=env,
                       args=("--batch-ms", "300")) as worker:  # fmt: skip
        wait_committed(kafka_bootstrap, worker_group(ns), [namespaced(CUSTOMERS, ns),
                       namespaced(TRANSACTIONS, ns)], worker=worker)  # fmt: skip
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
    got = collect_output(kafka_bootstrap, ns)
    published = published_specs(kafka_bootstrap, namespaced(FEATURE_SPECS, ns))

    # Assert: the rows, the spec the worker published, what fl up / baseline would take
    assert got.total_rows() == 400
    for silo in SILOS:
        assert got.rows[silo] == want[silo]
    assert spec.columns[-1] == "txn.TxScore" and spec != FeatureSpec()
    assert got.spec_versions == {spec.version}
    assert [d["columns"] for d in published] == [list(spec.columns)]
    assert choose_spec("", 0, published) == (spec.version, spec.n_features)
    labels = [orjson.loads(e[2]).get("label") for e in events if e[0] == "transaction"]
    assert set(labels) == {0, 1}
