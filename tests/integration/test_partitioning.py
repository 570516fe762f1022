"""Mixed partitioners: a CRC32 producer (librdkafka's default, like kcat) and a murmur2
producer (Kafka's default, fedstream's) write the same customers; the worker forwards
every misplaced record and its output equals the reference exactly. Chatbot requests sent
with the CRC32 partitioner are forwarded too and answered with the customer's state."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import orjson

from app.features.partitioning import partition_for
from app.ops.offsets import KafkaReader
from app.ops.status import drained, take_sample
from app.ports import free_port
from app.settings import Settings
from app.stream.harness import WorkerProcess, produce_records, read_topic
from app.stream.repartition import FORWARDED_HEADER
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    default_spec,
    new_namespace,
    records,
    reference_rows,
)
from tests.integration.test_metrics import _scrape
from tests.integration.test_stream_worker import synthetic_phases
from topics import CHATBOT_REQUESTS, CHATBOT_RESPONSES, CUSTOMERS, TRANSACTIONS, namespaced

CRC32 = {"partitioner": "consistent_random"}  # librdkafka's default partitioner


def _wait_drained(settings: Settings, worker: WorkerProcess, timeout_s: float = 180) -> None:
    """Committed up to the end twice, 2 s apart (forwarded copies arrive after the originals)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    with KafkaReader(settings.bootstrap) as reader:
        while streak < 2:
            worker.check_alive()
            assert time.monotonic() < deadline, "worker did not drain its inputs"
            streak = streak + 1 if drained(take_sample(reader, settings)[1]) else 0
            time.sleep(2 if streak else 0.5)


def _ask_everyone(bootstrap: str, ns: str, ids: list[str], worker: WorkerProcess) -> list[Any]:
    """One request per customer sent with the CRC32 partitioner; every reply, in order."""
    requests, responses = namespaced(CHATBOT_REQUESTS, ns), namespaced(CHATBOT_RESPONSES, ns)
    sent = [(requests, cid.encode(), orjson.dumps({"request_id": f"r-{cid}", "customer_id": cid,
             "reply_topic": responses})) for cid in ids]  # fmt: skip
    produce_records(bootstrap, sent, **CRC32)
    deadline = time.monotonic() + 120
    while True:
        replies = {d["request_id"]: d for d in
                   (orjson.loads(r.value) for r in read_topic(bootstrap, responses))}  # fmt: skip
        if len(replies) >= len(ids):
            return [replies.get(f"r-{cid}") for cid in ids]
        worker.check_alive()
        assert time.monotonic() < deadline, f"{len(replies)} of {len(ids)} replies"
        time.sleep(1)


def test_crc32_and_murmur2_producers_mixed(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare: even customers' profiles via CRC32 and transactions via murmur2, odd ones
    # the other way round (each customer's records keep their order within a producer)
    ns = new_namespace(kafka_bootstrap, "parts")
    settings = Settings(bootstrap_servers=kafka_bootstrap, namespace=ns)
    phases = synthetic_phases(customers=60, n_events=3_000)
    events = [e for phase in phases for e in phase]
    even = {key for kind, key, _ in events if kind == "customer" and int(key[-1:] or b"0") % 2 == 0}
    port = free_port()
    worker = WorkerProcess(kafka_bootstrap, ns, tmp_path, len(SILOS),
                           args=["--batch-ms", "300", "--store", "memory://",
                                 "--metrics-port", str(port)])  # fmt: skip

    # Execute
    with worker:
        for phase in phases:
            via_crc = [e for e in phase if (e[1] in even) == (e[0] == "customer")]
            via_murmur = [e for e in phase if (e[1] in even) != (e[0] == "customer")]
            produce_records(kafka_bootstrap, records(via_crc, ns), **CRC32)
            produce_records(kafka_bootstrap, records(via_murmur, ns))
            _wait_drained(settings, worker)
        ids = sorted({key.decode() for kind, key, _ in events
                      if kind == "customer" and not key.startswith(b"bad-")})  # fmt: skip
        replies = _ask_everyone(kafka_bootstrap, ns, ids, worker)
        time.sleep(1)  # the counter of the last forwarded request
        scraped = _scrape(port)
    worker.stop(signal.SIGTERM)
    got = collect_output(kafka_bootstrap, ns)
    want, _ref = reference_rows(events, default_spec())

    # Assert: every row joined with the state of its customer, exactly as the reference
    assert got.rows == want
    misplaced = forwarded = 0
    origins: list[bytes] = []
    for topic in (namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)):
        for rec in read_topic(kafka_bootstrap, topic):
            if rec.key is None:
                continue
            right = partition_for(rec.key, 4) == rec.partition
            origin = [v for name, v in rec.headers if name == FORWARDED_HEADER]
            if origin:
                forwarded += 1
                origins.append(origin[0])
                assert right
            elif not right:
                misplaced += 1
    assert misplaced > 100 and forwarded == misplaced == len(set(origins))
    inputs = {namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)}
    counted = {dict(k[1])["topic"]: v for k, v in scraped.items()
               if k[0] == "fedstream_mispartitioned_total"}  # fmt: skip
    assert sum(v for t, v in counted.items() if t in inputs) == misplaced

    # Assert: each chat request answered once, with its customer's profile, wherever it landed
    silo_of = {key.decode(): int(orjson.loads(value)["silo"]) for kind, key, value in events
               if kind == "customer" and key.decode() in ids}  # fmt: skip
    for cid, reply in zip(ids, replies, strict=True):
        assert reply is not None and reply["status"] == "ok", reply
        assert reply["customer_id"] == cid and reply["profile"] is not None
        assert reply["silo"] == silo_of[cid]
    requests = read_topic(kafka_bootstrap, namespaced(CHATBOT_REQUESTS, ns))
    copies = [r for r in requests if any(name == FORWARDED_HEADER for name, _ in r.headers)]
    originals = [r for r in requests if r not in copies]
    wrong = [r for r in originals if partition_for(r.key, 4) != r.partition]
    assert len(originals) == len(ids) and len(wrong) > 10
    assert sorted(r.key for r in copies) == sorted(r.key for r in wrong)
    assert all(partition_for(r.key, 4) == r.partition for r in copies)
    assert counted[namespaced(CHATBOT_REQUESTS, ns)] == len(wrong)
