"""A user pipeline's durable state survives a SIGKILL of the worker (real broker).

The pipeline of ``pipelines/durable_state.py`` (``json`` table and stream, a tumbling and
an all-time window, ``unique`` ids) runs in a ``fedstream worker`` loaded by file path.
The worker is killed once about a third of the payments is committed, at the instant a
commit writes its key states to the local store (before the offsets), then restarted on
the same data directory: it recovers the table versions and the key states (local store
and changelogs of its Faust tables) and skips, by offset, the records whose state was
written just before the kill. Their rows must have been delivered before that state was
written (``app.stream.staged_state``): a worker that wrote both in one step lost them. Every
row must then equal the one of an uninterrupted run (the in-memory run of the same
pipeline, which the own-stream test shows the worker matches): a lost state would restart
an account's all-time count and gap, a state applied twice would count a payment twice
or dead-letter its replay as a repeated id. Rows sent after the last commit may be sent
again (at-least-once), nothing else.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.pipeline.load import load_pipeline
from app.pipeline.runner import run_pipeline
from app.stream.harness import (
    WorkerProcess,
    create_topics,
    produce_records,
    read_topic,
    wait_committed,
    worker_group,
)
from tests.integration.stream_support import collect_output
from tests.integration.test_stream_restart import committed_offsets, committed_total
from topics import CUSTOMERS, TRANSACTIONS, namespaced

pytestmark = pytest.mark.integration

PIPELINE = Path(__file__).parent / "pipelines" / "durable_state.py"
SILOS = (0, 1)
T0 = 1_709_251_200.0
ACCOUNTS, PAYMENTS = 150, 20_000
# Payments are sent at a pace, not all at once: a quiet box's worker took all 20,000 in
# ~10 s, commits then followed each other with no quiet stretch (so no state burst was
# seen) and the stream was done before the kill ("killed too late", CI). At the pace the
# worker idles between chunks, so a commit's state write stands out, and the stream is
# still running when the worker is killed, however fast the box.
CHUNK, CHUNK_EVERY_S = 250, 0.25  # 1,000 payments/s: 20 s in all


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


class PacedProducer(threading.Thread):
    """Sends ``records`` in chunks of CHUNK every CHUNK_EVERY_S; ``join_checked`` raises
    what the sending raised."""

    def __init__(self, bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.records = bootstrap, records
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(0, len(self.records), CHUNK):
                t0 = time.monotonic()
                produce_records(self.bootstrap, self.records[i : i + CHUNK])
                time.sleep(max(0.0, CHUNK_EVERY_S - (time.monotonic() - t0)))
        except BaseException as exc:  # reported by join_checked
            self.error = exc

    def join_checked(self, timeout_s: float = 120) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "payments still being sent"
        if self.error is not None:
            raise self.error


def _kill_when_state_lands(worker: WorkerProcess, data_dir: Path, quiet_s: float = 0.1,
                           burst_bytes: int = 4096, within_s: float = 5.0) -> None:  # fmt: skip
    """SIGKILL the worker the instant a commit starts writing key states to RocksDB.

    The worker's key-state table (``windows``) is a RocksDB store per partition whose
    write-ahead log grows with every write: a commit's key states (tens of keys of ~0.5 kB
    within a millisecond) and, as their changelog records are delivered, Faust's persisted
    offsets (~50 bytes each). The first burst of ``burst_bytes`` after ``quiet_s`` without
    growth is a commit's state write; the kill lands right there, the moment a worker that
    wrote state before its rows were delivered loses them (its frames still in the
    producer then). A smaller burst that goes quiet again (offsets) is not it. No burst
    within ``within_s``: killed then (still mid-stream, a restart test all the same).
    """
    wals = sorted(data_dir.glob("worker/*/v1/tables/windows-*.db/*.log"))
    assert wals, "no key-state store yet"

    def sizes() -> list[int]:
        out = []
        for wal in wals:
            try:
                out.append(wal.stat().st_size)
            except FileNotFoundError:  # a new log after a memtable flush: starts over
                out.append(0)
        return out

    deadline = time.monotonic() + within_s
    last = sizes()
    base: list[int] | None = None  # sizes where the current burst started
    changed = started = time.monotonic()
    while time.monotonic() < deadline:
        now = sizes()
        t = time.monotonic()
        if now != last:
            if t - changed >= quiet_s:
                base, started = last, t  # a burst starts after a quiet stretch
            elif base is not None and t - started > 0.01:
                base = None  # a slow trickle (offsets): wait for the next quiet stretch
            if base is not None and any(n - b >= burst_bytes
                                        for n, b in zip(now, base, strict=True)):  # fmt: skip
                os.kill(worker.pid, signal.SIGKILL)
                worker.stop(signal.SIGKILL)  # reap it
                return
            last, changed = now, t
    worker.check_alive()  # no state burst seen (e.g. an unusually small state): kill now
    print(f"\nno key-state write seen within {within_s} s; killed at a random moment")
    worker.stop(signal.SIGKILL)


def _row_times(
    rows: dict[int, list[tuple[str, Any, float]]],
    accounts: list[tuple[str, bytes, bytes]],
    payments: list[tuple[str, bytes, bytes]],
) -> dict[int, dict[tuple[bytes, float], float]]:
    """Per silo, each uninterrupted row's event time (its payment: rows come in stream
    order per silo, and a payment's silo is its account's region)."""
    region = {key: orjson.loads(raw)["region"] for _t, key, raw in accounts}
    out: dict[int, dict[tuple[bytes, float], float]] = {}
    for silo in SILOS:
        times = [orjson.loads(raw)["t"] for _t, key, raw in payments if region[key] == silo]
        assert len(times) == len(rows[silo])
        out[silo] = {(x.tobytes(), y): t for (_id, x, y), t in zip(rows[silo], times, strict=True)}
    return out


def _explain(
    bootstrap: str,
    ns: str,
    got: dict[int, Counter[tuple[bytes, float, float]]],
    want: dict[int, dict[tuple[bytes, float], float]],
    payments: list[tuple[str, bytes, bytes]],
    kill_commits: dict[int, int],
) -> str:
    """Rows missing and extra per silo: payment id, account, partition@offset, values.

    ``want``: per silo, the uninterrupted run's rows and their event times. A row's event
    time names its payment (``T0 + 7 j``); the partition and offset come from the
    transactions topic, the committed offsets from the moment of the kill.
    """
    where: dict[str, tuple[int, int]] = {}
    for rec in read_topic(bootstrap, namespaced(TRANSACTIONS, ns)):
        where[orjson.loads(rec.value)["pid"]] = (rec.partition, rec.offset)
    lines = [f"committed at the kill: {dict(sorted(kill_commits.items()))}"]

    def describe(x: bytes, y: float, ts: float) -> str:
        values = ", ".join(f"{v:.4g}" for v in np.frombuffer(x, dtype=np.float32))
        j = round((ts - T0) / 7.0)
        doc = orjson.loads(payments[j][2]) if 0 <= j < len(payments) else {}
        pid = doc.get("pid", "?")
        part, off = where.get(pid, (-1, -1))
        return f"{pid} {doc.get('account', '?')} p{part}@{off} ({values}) y={y}"

    for silo in SILOS:
        got_xy = {(x, y): ts for (x, y, ts) in got[silo]}
        missing = set(want[silo]) - set(got_xy)
        extra = set(got_xy) - set(want[silo])
        lines.append(f"silo {silo}: {len(missing)} rows missing, {len(extra)} extra")
        for x, y in sorted(missing, key=lambda k: want[silo][k]):
            lines.append("  missing " + describe(x, y, want[silo][(x, y)]))
        for x, y in sorted(extra, key=lambda k: got_xy[k]):
            lines.append("  extra   " + describe(x, y, got_xy[(x, y)]))
    return "\n".join(lines)


def test_a_user_pipeline_resumes_its_state_after_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare: the uninterrupted run's rows, topics of a fresh namespace
    accounts, payments = _events()
    pipeline = load_pipeline(str(PIPELINE))
    uninterrupted = run_pipeline(pipeline, [accounts, payments])
    want = {s: Counter((x.tobytes(), y) for _id, x, y in uninterrupted.rows[s]) for s in SILOS}
    want_ts = _row_times(uninterrupted.rows, accounts, payments)
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
        sender = PacedProducer(kafka_bootstrap, _in(ns, payments))
        sender.start()
        deadline = time.monotonic() + 180
        while committed_total(kafka_bootstrap, group, inputs[1]) < PAYMENTS // 3:
            worker.check_alive()
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        # the instant a commit's key states reach the local store, before its offsets
        _kill_when_state_lands(worker, tmp_path)
        kill_commits = committed_offsets(kafka_bootstrap, group, inputs[1])
        at_kill = sum(kill_commits.values())
        assert at_kill < PAYMENTS, "killed too late to test a restart"
        worker.start()
        sender.join_checked()
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
    wrong = any(set(rows[s]) != set(want[s]) for s in SILOS)
    if wrong or got.dead_letters:  # which payments, where in the stream, and the worker's log
        print(_explain(kafka_bootstrap, ns, got.rows, want_ts, payments, kill_commits))
        print(worker.log_tail(120))
    assert not got.dead_letters, got.dead_letters[:3]  # no replay counted as a repeat
    for silo in SILOS:
        assert set(rows[silo]) == set(want[silo]), f"silo {silo}: rows lost or changed"
        assert all(rows[silo][k] >= n for k, n in want[silo].items())
    assert repeats <= PAYMENTS - at_kill  # only rows after the last commit are sent again
