"""A user pipeline's durable state survives a SIGKILL of the worker (real broker).

The pipeline of ``pipelines/durable_state.py`` (``json`` table and stream, a tumbling and
an all-time window, ``unique`` ids) runs in a ``fedstream worker`` loaded by file path.
The worker is killed once about a third of the payments is committed, then restarted: it
recovers the table versions and the key states from the changelogs of its Faust tables
and skips, by offset, the records whose state was written just before the kill. Every
row must then equal the one of an uninterrupted run (the in-memory run of the same
pipeline, which the own-stream test shows the worker matches): a lost state would restart
an account's all-time count and gap, a state applied twice would count a payment twice
or dead-letter its replay as a repeated id. Rows sent after the last commit may be sent
again (at-least-once), nothing else.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.pipeline.load import load_pipeline
from app.pipeline.runner import run_pipeline
from app.stream.harness import (
    WorkerProcess,
    create_topics,
    produce_records,
    wait_committed,
    worker_group,
)
from tests.integration.stream_support import collect_output
from tests.integration.test_stream_restart import committed_total
from topics import CUSTOMERS, TRANSACTIONS, namespaced

pytestmark = pytest.mark.integration

PIPELINE = Path(__file__).parent / "pipelines" / "durable_state.py"
SILOS = (0, 1)
T0 = 1_709_251_200.0
ACCOUNTS, PAYMENTS = 150, 20_000


def _events() -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """Accounts (one version each), then payments ~7 s apart over ~39 h of event time."""
    rng = random.Random(5)
    accounts = [(CUSTOMERS, f"a{i}".encode(), orjson.dumps(
        {"account": f"a{i}", "t": T0, "risk": round(rng.random(), 3), "region": i % 2}))
        for i in range(ACCOUNTS)]  # fmt: skip
    payments = []
    for j in range(PAYMENTS):
        a = f"a{rng.randrange(ACCOUNTS)}"
        doc = {"account": a, "t": T0 + 7.0 * j, "pid": f"p{j}", "value": rng.uniform(1, 500),
               "kind": rng.choice("abcd"), "fraud": int(rng.random() < 0.1)}  # fmt: skip
        payments.append((TRANSACTIONS, a.encode(), orjson.dumps(doc)))
    return accounts, payments


def _in(ns: str, events: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes | None, bytes]]:
    return [(namespaced(topic, ns), key, value) for topic, key, value in events]


def _rows(rows: dict[int, Any]) -> dict[int, Counter[tuple[bytes, float]]]:
    """The worker's rows per silo as a multiset of (row bytes, label)."""
    out: dict[int, Counter[tuple[bytes, float]]] = {}
    for silo, counter in rows.items():
        out[silo] = Counter()
        for (x, y, _ts), n in counter.items():
            out[silo][(x, y)] += n
    return out


def test_a_user_pipeline_resumes_its_state_after_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare: the uninterrupted run's rows, topics of a fresh namespace
    accounts, payments = _events()
    pipeline = load_pipeline(str(PIPELINE))
    uninterrupted = run_pipeline(pipeline, [accounts, payments])
    want = {s: Counter((x.tobytes(), y) for _id, x, y in uninterrupted.rows[s]) for s in SILOS}
    assert sum(c.total() for c in want.values()) == PAYMENTS and not uninterrupted.dead_letters
    ns = f"tpipekill{int(time.time() * 1000) % 10**8}"
    create_topics(kafka_bootstrap, SILOS, 4, ns)
    group = worker_group(ns)
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    worker = WorkerProcess(kafka_bootstrap, ns, tmp_path, len(SILOS), log_level="INFO",
                           args=("--batch-ms", "300", "--pipeline", str(PIPELINE)))  # fmt: skip

    # Execute: accounts, then the payments; SIGKILL once a third is committed; restart
    try:
        worker.start()
        produce_records(kafka_bootstrap, _in(ns, accounts))
        wait_committed(kafka_bootstrap, group, inputs, timeout_s=180, worker=worker)
        produce_records(kafka_bootstrap, _in(ns, payments))
        deadline = time.monotonic() + 180
        while committed_total(kafka_bootstrap, group, inputs[1]) < PAYMENTS // 3:
            worker.check_alive()
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        time.sleep(0.4)  # mid-way between two commits: state written, offsets not yet
        worker.stop(signal.SIGKILL)
        at_kill = committed_total(kafka_bootstrap, group, inputs[1])
        assert at_kill < PAYMENTS, "killed too late to test a restart"
        worker.start()
        wait_committed(kafka_bootstrap, group, inputs, timeout_s=240, worker=worker)
        assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()
    except BaseException:
        print(worker.log_tail(200))
        raise
    finally:
        worker.stop(signal.SIGKILL, 5)
    got = collect_output(kafka_bootstrap, ns, SILOS)

    # Assert: every row of the uninterrupted run, none changed; repeats only of sent rows
    rows = _rows(got.rows)
    repeats = got.total_rows() - sum(len(c) for c in rows.values())
    print(f"\nkilled at {at_kill}/{PAYMENTS} committed; {got.total_rows()} rows, "
          f"{repeats} sent again after the kill")  # fmt: skip
    assert not got.dead_letters, got.dead_letters[:3]  # no replay counted as a repeat
    for silo in SILOS:
        assert set(rows[silo]) == set(want[silo]), f"silo {silo}: rows lost or changed"
        assert all(rows[silo][k] >= n for k, n in want[silo].items())
    assert repeats <= PAYMENTS - at_kill  # only rows after the last commit are sent again
