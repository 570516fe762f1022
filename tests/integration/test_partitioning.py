"""Mixed partitioners: a CRC32 producer (librdkafka's default, like kcat) and a murmur2
producer (Kafka's default, fedstream's) write the same customers; the worker forwards
every misplaced record and its output equals the reference exactly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

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
from topics import CUSTOMERS, TRANSACTIONS, namespaced

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
    print(
        "ORIGINS",
        len(origins),
        len(set(origins)),
        misplaced,
        got.total_rows(),
        len(got.dead_letters),
    )
    assert misplaced > 100 and forwarded == misplaced == len(set(origins))
    counted = sum(v for k, v in scraped.items() if k[0] == "fedstream_mispartitioned_total")
    assert counted == misplaced
