"""A Faust RocksDB table write outlives a crash before its changelog record is sent.

Why the worker writes a state only once the rows it covers are delivered
(:mod:`app.stream.staged_state`): ``table[key] = value`` puts the value into the local
RocksDB store at once (faust-streaming 0.15.3, ``stores/rocksdb.py`` ``_set``) while the
changelog record still waits in the producer buffer. A process killed then leaves the
value on disk, and a worker restarted on the same data directory reads it back: Faust's
recovery only replays the changelog after the persisted offset (none here), it never
rolls local values back. Runs Faust's own code in a child process that dies with
``os._exit`` (no flush, no close: what SIGKILL leaves). No broker is needed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_WRITE = """
import os, sys
from types import SimpleNamespace
import faust
from faust.streams import _current_event
import weakref

app = faust.App("local-store", broker="kafka://127.0.0.1:1", store="rocksdb://",
                datadir=sys.argv[1])
table = app.Table("windows", default=None, key_type=bytes, value_type=bytes, partitions=4)


class Event:  # the worker writes in the event context of the key's partition
    message = SimpleNamespace(partition=2, topic="bank.transactions")


event = Event()
_current_event.set(weakref.ref(event))
table[b"a7"] = b"state up to offset 41"
print(app.producer.buffer.pending.qsize())  # the changelog record, never sent
sys.stdout.flush()
os._exit(0)
"""

_READ = """
import sys
import faust
from faust.types import TP

app = faust.App("local-store", broker="kafka://127.0.0.1:1", store="rocksdb://",
                datadir=sys.argv[1])
table = app.Table("windows", default=None, key_type=bytes, value_type=bytes, partitions=4)
store = table.data
print(store.persisted_offset(TP(table.changelog_topic_name, 2)))
print(store._db_for_partition(2).get(b"a7"))
"""


def _run(code: str, data_dir: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(data_dir)],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return out.stdout.strip().splitlines()


def test_a_table_write_is_on_disk_before_its_changelog_record_is_sent(tmp_path: Path) -> None:
    assert _run(_WRITE, tmp_path) == ["1"]  # one changelog record queued, then the crash
    persisted, value = _run(_READ, tmp_path)
    # no changelog offset was ever confirmed, yet the value is there for the next worker
    assert persisted == "None"
    assert value == "b'state up to offset 41'"
