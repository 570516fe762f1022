"""Helpers of the stream worker tests: event sets, the worker's output, the reference."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.features.frames import decode_batch
from app.features.reference import Event, ReferenceOutput, run_reference_phases
from app.features.spec import FeatureSpec
from app.features.windows import WindowConfig
from app.kafka.broker import LocalBroker
from app.settings import Settings
from app.stream.harness import (
    WorkerProcess,
    create_topics,
    read_topic,
    wait_committed,
    worker_group,
)
from topics import CUSTOMERS, TRANSACTIONS, dlq, namespaced, silo_batches

SILOS = (0, 1, 2)
PARTITIONS = 4
TOPIC_OF_KIND = {"customer": CUSTOMERS, "transaction": TRANSACTIONS}

RowKey = tuple[bytes, float, float]
"""A row as the tests compare it: float32 row bytes, label, event time."""


def default_spec(txn_attrs: Sequence[str] = (), profile_attrs: Sequence[str] = ()) -> FeatureSpec:
    """The spec ``fedstream worker`` builds from default Settings."""
    s = Settings()
    return FeatureSpec(
        windows=WindowConfig(s.short_window_s, s.long_window_s, s.hop_s),
        txn_attrs=tuple(txn_attrs),
        profile_attrs=tuple(profile_attrs),
    )


def new_namespace(bootstrap: str, tag: str) -> str:
    """A fresh namespace with the catalogue's topics created."""
    ns = f"t{tag}{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, SILOS, PARTITIONS, ns)
    return ns


def encode(kind: str, key: str, value: dict[str, Any] | bytes) -> Event:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return (kind, key.encode(), raw)


def records(events: Iterable[Event], ns: str) -> list[tuple[str, bytes | None, bytes]]:
    return [(namespaced(TOPIC_OF_KIND[kind], ns), key, raw) for kind, key, raw in events]


@dataclass
class WorkerOutput:
    """Everything the worker wrote in one namespace."""

    rows: dict[int, Counter[RowKey]] = field(default_factory=dict)
    frames: int = 0
    spec_versions: set[str] = field(default_factory=set)
    bad_silo_frames: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    columns: dict[int, list[Any]] = field(default_factory=dict)

    def total_rows(self) -> int:
        return sum(c.total() for c in self.rows.values())


def collect_output(bootstrap: str, ns: str, silos: Sequence[int] = SILOS) -> WorkerOutput:
    out = WorkerOutput()
    for silo in silos:
        rows: Counter[RowKey] = Counter()
        for rec in read_topic(bootstrap, namespaced(silo_batches(silo), ns)):
            frame = decode_batch(rec.value)
            out.frames += 1
            out.spec_versions.add(frame.meta.spec_version)
            if frame.meta.silo != silo:
                out.bad_silo_frames += 1
            for i in range(frame.meta.rows):
                rows[(frame.X[i].tobytes(), float(frame.y[i]), float(frame.ts[i]))] += 1
        out.rows[silo] = rows
    for topic in (CUSTOMERS, TRANSACTIONS):
        for rec in read_topic(bootstrap, namespaced(dlq(topic), ns)):
            out.dead_letters.append(orjson.loads(rec.value))
    return out


def reference_rows(
    phases: Sequence[Sequence[Event]], spec: FeatureSpec, silos: Sequence[int] = SILOS
) -> tuple[dict[int, Counter[RowKey]], ReferenceOutput]:
    """Per silo, the reference's rows as a multiset, and the reference itself.

    ``phases``: the event lists produced one after the other, each once the worker had
    committed the previous one (profiles of a later phase are late for earlier ones); a
    flat list of events is one phase.
    """
    if phases and isinstance(phases[0][0], str):  # one flat list of events: one phase
        phases = [phases]  # type: ignore[list-item]
    ref = run_reference_phases(phases, spec, silos)
    events = [e for phase in phases for e in phase]
    ts_of = {}
    for kind, _key, raw in events:
        if kind == "transaction":
            try:
                obj = orjson.loads(raw)
                ts_of[obj["txn_id"]] = float(obj["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    rows = {
        silo: Counter((row.tobytes(), float(label), ts_of[txn_id]) for txn_id, row, label in got)
        for silo, got in ref.rows.items()
    }
    return rows, ref


def dead_letter_pairs(output: WorkerOutput) -> Counter[tuple[bytes, str]]:
    return Counter((base64.b64decode(d["value_b64"]), d["reason"]) for d in output.dead_letters)


def run_worker_over(
    bootstrap: str,
    ns: str,
    phases: Sequence[Sequence[Event]],
    data_dir: Path,
    args: Sequence[str] = ("--batch-ms", "300"),
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start a worker, send each phase and wait until the worker committed all of it."""
    from app.stream.harness import produce_records

    worker = WorkerProcess(bootstrap, ns, data_dir, len(SILOS), args=args, env=env).start()
    try:
        inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
        for phase in phases:
            produce_records(bootstrap, records(phase, ns))
            wait_committed(bootstrap, worker_group(ns), inputs, timeout_s=120, worker=worker)
    except BaseException:
        print(worker.log_tail())
        worker.stop()
        raise
    return worker


def act_on(broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a test's own (secure) broker the one this process acts on as its admin, and
    the one ``fedstream`` subprocesses find their principals for (undone after the test)."""
    import app.kafka.security

    monkeypatch.setenv("FEDSTREAM_KAFKA_CLIENTS", str(broker.clients_dir))
    monkeypatch.setattr(app.kafka.security, "_current", broker.identity())
