"""The closed loop on a real broker and a real `fedstream worker` process.

One worker runs through three phases of synthetic traffic in its own namespace: phase A
before any model, phase B (a large backlog) with model round 1 published before it and
round 2 published while the worker is still working through it, phase C after round 2.
Models are published as frames straight to ``fl.model.global`` (the Flower path is
exercised by the demo and tests/integration/test_fl_rounds.py).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest

from app.features.frames import decode_batch
from app.features.validation import parse_customer, parse_transaction
from app.features.windows import CustomerWindows, activity_summary, update
from app.fl.model_store import make_model_frame
from app.kafka.clients import make_producer
from app.model.config import ModelConfig
from app.model.params import init_arrays
from app.model.standardize import MomentStats
from app.produce.synthetic import SyntheticBank
from app.stream.ask import ChatClient
from app.stream.harness import (
    WorkerProcess,
    produce_records,
    read_topic,
    wait_committed,
    worker_group,
)
from tests.integration.stream_support import SILOS, default_spec, new_namespace
from tests.native_activity import as_native, native_subset
from topics import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    CUSTOMERS,
    FEATURES_ENRICHED,
    MODEL_GLOBAL,
    TRANSACTIONS,
    dlq,
    namespaced,
    silo_batches,
)

SPEC = default_spec()
MODEL = "fraud-mlp"


def publish_model(bootstrap: str, ns: str, round_: int) -> str:
    config = ModelConfig(n_features=SPEC.n_features, seed=round_)
    rng = np.random.default_rng(round_)
    moments = MomentStats.from_rows(rng.normal(size=(50, SPEC.n_features)))
    frame, version = make_model_frame(
        model_name=MODEL, round_=round_, arrays=init_arrays(config), config=config,
        spec_version=SPEC.version, moments=moments, metrics={"round": round_},
    )  # fmt: skip
    producer = make_producer(bootstrap)
    producer.produce(namespaced(MODEL_GLOBAL, ns), value=frame, key=MODEL)
    assert producer.flush(30) == 0
    return version


@dataclass
class LoopRun:
    ns: str
    versions: list[str]
    phases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # produced txns
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker: WorkerProcess | None = None

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return [t for phase in self.phases.values() for t in phase]


def _send(bootstrap: str, ns: str, events: list[tuple[str, str, dict[str, Any]]]) -> None:
    topic = {"customer": namespaced(CUSTOMERS, ns), "transaction": namespaced(TRANSACTIONS, ns)}
    produce_records(
        bootstrap, [(topic[kind], key.encode(), orjson.dumps(v)) for kind, key, v in events]
    )


@pytest.fixture(scope="module")
def loop_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopRun]:
    # Prepare: a namespace, a worker, 24,000 synthetic events in three phases
    bootstrap = kafka_bootstrap
    ns = new_namespace(bootstrap, "loop")
    events = list(SyntheticBank(customers=300, silos=len(SILOS), seed=5).events(24_000))
    run = LoopRun(ns, [])
    for kind, key, value in events:
        if kind == "customer":
            run.customers[key] = value
    group = worker_group(ns)
    txn_topic = [namespaced(TRANSACTIONS, ns)]
    cut_a, cut_b = 4_000, 20_000
    worker = WorkerProcess(
        bootstrap, ns, tmp_path_factory.mktemp("loop-worker"),
        args=["--store", "memory://", "--batch-ms", "300"],
    )  # fmt: skip
    run.worker = worker
    with worker:
        # Execute: phase A unscored
        _send(bootstrap, ns, events[:cut_a])
        wait_committed(bootstrap, group, txn_topic, 180, worker)
        # phase B: round 1 first, then the backlog, round 2 while the worker is busy
        run.versions.append(publish_model(bootstrap, ns, 1))
        time.sleep(2.0)
        _send(bootstrap, ns, events[cut_a:cut_b])
        run.versions.append(publish_model(bootstrap, ns, 2))
        wait_committed(bootstrap, group, txn_topic, 180, worker)
        time.sleep(2.0)
        # phase C: after round 2
        _send(bootstrap, ns, events[cut_b:])
        wait_committed(bootstrap, group, txn_topic, 180, worker)
        for name, lo, hi in (("A", 0, cut_a), ("B", cut_a, cut_b), ("C", cut_b, len(events))):
            run.phases[name] = [v for k, _key, v in events[lo:hi] if k == "transaction"]
        for _kind, _key, value in events:
            if _kind == "customer":
                run.customers[_key] = value
        yield run


def _enriched(bootstrap: str, ns: str) -> list[tuple[int, int, dict[str, Any]]]:
    records = read_topic(bootstrap, namespaced(FEATURES_ENRICHED, ns))
    return [(r.partition, r.offset, orjson.loads(r.value)) for r in records]


def test_swap_under_load_loses_no_event_and_enriched_carry_versions(
    kafka_bootstrap: str, loop_run: LoopRun
) -> None:
    # Execute
    enriched = _enriched(kafka_bootstrap, loop_run.ns)
    frames = [
        decode_batch(r.value)
        for s in SILOS
        for r in read_topic(kafka_bootstrap, namespaced(silo_batches(s), loop_run.ns))
    ]

    # Assert: every produced transaction exactly once in enriched and in the frames
    produced = loop_run.transactions
    ids = [doc["txn_id"] for _p, _o, doc in enriched]
    assert len(ids) == len(produced) == len(set(ids))
    assert set(ids) == {t["txn_id"] for t in produced}
    assert sum(f.meta.rows for f in frames) == len(produced)
    # phase A unscored, phase C all scored by round 2
    v1, v2 = loop_run.versions
    by_id = {doc["txn_id"]: doc for _p, _o, doc in enriched}
    assert all(by_id[t["txn_id"]]["model_version"] is None for t in loop_run.phases["A"])
    phase_c = [by_id[t["txn_id"]] for t in loop_run.phases["C"]]
    assert phase_c and all(d["model_version"] == v2 and d["model_round"] == 2 for d in phase_c)
    assert all(0.0 <= d["score"] <= 1.0 for d in phase_c)
    # per partition, versions only move forward: None -> v1 -> v2
    rank = {None: 0, v1: 1, v2: 2}
    per_partition: dict[int, list[int]] = defaultdict(list)
    for partition, _offset, doc in sorted(enriched, key=lambda e: (e[0], e[1])):
        per_partition[partition].append(rank[doc["model_version"]])
    assert all(seq == sorted(seq) for seq in per_partition.values())
    # frames: one model per frame, scores present exactly when a model scored them
    for frame in frames:
        assert frame.meta.model_version in rank
        scored = ~np.isnan(frame.scores)
        assert scored.all() if frame.meta.model_version else not scored.any()
    assert {f.meta.model_version for f in frames} >= {None, v2}


def _reference_activity(
    produced: list[dict[str, Any]], customer_id: str, as_of: float
) -> dict[str, Any]:
    state = CustomerWindows()
    for value in produced:
        if value["customer_id"] == customer_id:
            update(state, parse_transaction(orjson.dumps(value)), SPEC.windows)
    return activity_summary(state, as_of, SPEC.windows)


def test_ask_returns_the_aggregates_of_the_produced_events(
    kafka_bootstrap: str, loop_run: LoopRun
) -> None:
    # Prepare: the most active customers of the last phase
    counts: dict[str, int] = defaultdict(int)
    for t in loop_run.phases["C"]:
        counts[t["customer_id"]] += 1
    chosen = sorted(counts, key=lambda c: -counts[c])[:5]

    # Execute
    with ChatClient(kafka_bootstrap, loop_run.ns) as client:
        replies = {cid: client.ask(cid, "what is their risk?", timeout_s=15) for cid in chosen}
        unknown = client.ask("nobody-here", timeout_s=15)

    # Assert: "as of" the stream clock (3rd-largest latest time of distinct customers) or
    # the customer's own latest event, whichever is later
    latest: dict[str, float] = defaultdict(float)
    for t in loop_run.transactions:
        latest[t["customer_id"]] = max(latest[t["customer_id"]], t["ts"])
    stream_now = sorted(latest.values())[-3]
    for cid, reply in replies.items():
        assert reply is not None, f"no answer for {cid}"
        doc = reply.doc
        assert doc["status"] == "ok" and doc["customer_id"] == cid
        activity = doc["activity"]
        as_of = max(stream_now, latest[cid])
        assert activity["as_of"] == as_of
        want = _reference_activity(loop_run.transactions, cid, as_of)
        assert as_native(activity) == native_subset(want)
        assert activity["long"]["count"] > 0
        assert doc["profile"] == parse_customer(orjson.dumps(loop_run.customers[cid])).to_dict()
        assert doc["risk"]["model_version"] == loop_run.versions[1]
        assert math.isfinite(doc["risk"]["score"]) and len(doc["risk"]["top_features"]) == 5
        assert doc["answer"].startswith("The latest transaction scores")
    assert unknown is not None and unknown.doc["status"] == "unknown_customer"


def test_malformed_requests_get_an_error_reply_and_go_to_the_dlq(
    kafka_bootstrap: str, loop_run: LoopRun
) -> None:
    # Prepare
    ns = loop_run.ns
    requests = namespaced(CHATBOT_REQUESTS, ns)
    bad = [
        (requests, b"c1", b'{"request_id": "bad-1", "customer_id": 7}'),  # id readable
        (requests, b"c1", b"this is not json"),  # nothing readable
    ]

    # Execute
    produce_records(kafka_bootstrap, bad)
    deadline = time.monotonic() + 30
    letters: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    while time.monotonic() < deadline and (len(letters) < 2 or not errors):
        time.sleep(0.5)
        letters = [orjson.loads(r.value) for r in
                   read_topic(kafka_bootstrap, namespaced(dlq(CHATBOT_REQUESTS), ns))]  # fmt: skip
        errors = [
            doc
            for r in read_topic(kafka_bootstrap, namespaced(CHATBOT_RESPONSES, ns))
            if (doc := orjson.loads(r.value))["status"] == "error"
        ]

    # Assert: both dead-lettered, one error reply, and the worker still answers
    assert len(letters) == 2 and {d["topic"] for d in letters} == {requests}
    assert [e["request_id"] for e in errors] == ["bad-1"]
    assert loop_run.worker is not None and loop_run.worker.alive()
    with ChatClient(kafka_bootstrap, ns) as client:
        cid = loop_run.phases["C"][0]["customer_id"]
        reply = client.ask(cid, timeout_s=15)
    assert reply is not None and reply.doc["status"] == "ok"
