"""The confluent-kafka defect ``KafkaReader.committed`` works around, against the real library.

``AdminClient.list_consumer_group_offsets`` crashes the process (SIGSEGV) when it is the
first group request a fresh broker answers (its group coordinator is still loading): in
``fedstream status --wait-drained`` right after ``fedstream kafka start``, or in the first
test of a suite. ``app/ops/offsets.py`` reads committed offsets through a consumer of the
group instead (``Consumer.committed``, retried while the coordinator loads).

Each call runs in its own interpreter, so the crash fails a test, not the suite. Each
needs a broker nobody has asked about groups yet: a fresh one (about 5-10 s). The outcome
is a race with the coordinator's loading: the call crashes, or it returns the retriable
"coordinator load in progress" error to the caller instead of retrying it (the quiet CI
box of the 2026-12-01 session saw that twice and one answer, no crash, in 3 brokers), or
it answers. Either failure is why fedstream goes through ``Consumer.committed`` with its
own retry, so the defect test tries up to ``DEFECT_ATTEMPTS`` fresh brokers and passes at
the first crash or load error. When it fails, every call answered: the installed
confluent-kafka no longer has the defect, the workaround (and this file's first test) can
go, and the pin of confluent-kafka in pyproject.toml can be lifted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import confluent_kafka

from app.kafka.broker import LocalBroker
from app.ports import free_port
from app.settings import default_cache_dir

DEFECT_ATTEMPTS = 3

LOAD_ERROR = "COORDINATOR_LOAD_IN_PROGRESS"
"""The error the library hands back instead of retrying (a failed call, exit 1)."""

ADMIN_CALL = """
import os, sys
from pathlib import Path
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from app.kafka.security import client_config, read_client_config
admin_conf = Path(os.environ["FEDSTREAM_KAFKA_CLIENTS"]) / "admin.conf"  # a secure broker
admin = AdminClient(client_config(sys.argv[1], read_client_config(admin_conf)))
request = [ConsumerGroupTopicPartitions("fresh-group", [TopicPartition("some.topic", 0)])]
for future in admin.list_consumer_group_offsets(request, request_timeout=30).values():
    print("offsets", [tp.offset for tp in future.result().topic_partitions])
"""

WORKAROUND_CALL = """
import os, sys
from pathlib import Path
from app.kafka.security import read_client_config, use
from app.ops.offsets import KafkaReader
use(read_client_config(Path(os.environ["FEDSTREAM_KAFKA_CLIENTS"]) / "admin.conf"))
with KafkaReader(sys.argv[1]) as reader:
    print("committed", reader.committed("fresh-group", [("some.topic", 0)]))
"""


def _call(
    code: str, bootstrap: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, bootstrap], capture_output=True,
                          text=True, timeout=120, check=False, env=env)  # fmt: skip


def _admin_call_on_a_new_broker(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The library call as the first group request of a broker started for it alone."""
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(data_dir, cache, port=free_port(), controller_port=free_port())
    broker.start(timeout_s=180)
    try:
        env = {**os.environ, "FEDSTREAM_KAFKA_CLIENTS": str(broker.clients_dir)}
        return _call(ADMIN_CALL, broker.bootstrap, env)
    finally:
        broker.stop()


def test_admin_group_offsets_still_crash_on_a_fresh_broker(tmp_path: Path) -> None:
    # Execute: the library call, first group request of a fresh broker, until one fails
    outcomes = []
    for attempt in range(DEFECT_ATTEMPTS):
        result = _admin_call_on_a_new_broker(tmp_path / f"kafka-{attempt}")
        crashed = result.returncode == -signal.SIGSEGV
        load_error = result.returncode == 1 and LOAD_ERROR in result.stderr
        if crashed or load_error:
            break
        outcomes.append(
            f"exit {result.returncode} {result.stdout.strip() or result.stderr.strip()[-200:]!r}"
        )

    # Assert: still the defect (a crash, or the load error handed back), not only answers
    assert crashed or load_error, (
        f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka "
        f"{confluent_kafka.libversion()[0]}) no longer crashes or fails in "
        f"list_consumer_group_offsets on {DEFECT_ATTEMPTS} fresh brokers ({'; '.join(outcomes)}): "
        "KafkaReader.committed's workaround and this test can go, and the confluent-kafka "
        "pin in pyproject.toml can be lifted"
    )


def test_workaround_reads_committed_offsets_on_a_fresh_broker(fresh_broker: str) -> None:
    # Execute: the same question through fedstream's workaround, first group request too
    result = _call(WORKAROUND_CALL, fresh_broker)

    # Assert: an answer (nothing committed yet), no crash
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "committed {}"
