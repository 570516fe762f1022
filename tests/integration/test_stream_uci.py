"""The real credit-default data replayed through the worker: joined rows match the CSV."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import pytest

from app.features.frames import decode_batch
from app.produce import UCI_PROFILE_ATTRS, UCI_TXN_ATTRS, UciReplay, expected_rows
from app.produce.uci import UCI_FILE
from app.stream.harness import read_topic
from tests.integration.stream_support import (
    SILOS,
    default_spec,
    encode,
    new_namespace,
    run_worker_over,
)
from tests.shared_data import find_shared_uci_csv, shared_dirs
from topics import namespaced, silo_batches

LIMIT = 2_000


def uci_csv() -> Path:
    """The CSV in ``shared/data`` (see tests/shared_data.py); never skip."""
    found = find_shared_uci_csv()
    if found is None:
        pytest.fail(f"{UCI_FILE} not found under any of {shared_dirs()} (in data/)")
    return found


def test_uci_replay_rows_match_the_csv(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare
    path = uci_csv()
    spec = default_spec(UCI_TXN_ATTRS, UCI_PROFILE_ATTRS)
    ns = new_namespace(kafka_bootstrap, "uci")
    events = [encode(k, key, v) for k, key, v in UciReplay(path, len(SILOS), LIMIT).events()]
    phases = [[e for e in events if e[0] == "customer"], [e for e in events if e[0] != "customer"]]
    expected = {row["ts"]: row for row in expected_rows(path, LIMIT, len(SILOS)).values()}
    col = {name: i for i, name in enumerate(spec.columns)}

    # Execute
    worker = run_worker_over(kafka_bootstrap, ns, phases, tmp_path, ("--batch-ms", "300", "--uci"))
    assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
    seen: dict[float, int] = {}
    rows = []
    for silo in SILOS:
        for rec in read_topic(kafka_bootstrap, namespaced(silo_batches(silo), ns)):
            frame = decode_batch(rec.value)
            assert frame.meta.spec_version == spec.version
            for i in range(frame.meta.rows):
                ts = float(frame.ts[i])
                seen[ts] = seen.get(ts, 0) + 1
                rows.append((silo, ts, frame.X[i], float(frame.y[i])))

    # Assert: every statement once, in its customer's silo, with the CSV's values
    assert len(expected) == 6 * LIMIT
    assert set(seen) == set(expected) and set(seen.values()) == {1}
    f32 = np.float32
    for silo, ts, x, y in rows:
        want = expected[ts]
        assert silo == want["silo"]
        assert y == (-1.0 if want["label"] is None else float(want["label"]))
        assert x[col["profile_missing"]] == 0.0
        assert x[col["age_100"]] == f32(want["age"] / 100.0)
        assert x[col["credit_limit_log1p"]] == f32(math.log1p(want["credit_limit"]))
        assert x[col["amount_log1p"]] == f32(math.log1p(want["amount"]))
        for name in UCI_PROFILE_ATTRS:
            assert x[col[f"profile.{name}"]] == f32(want[name]), (ts, name)
        for name in UCI_TXN_ATTRS:
            assert x[col[f"txn.{name}"]] == f32(want[name]), (ts, name)
    labels = [y for _s, _t, _x, y in rows if y >= 0]
    assert len(labels) == LIMIT and 0.1 < sum(labels) / LIMIT < 0.4
