"""A reproducible moment to kill a SuperNode at: right after its ClientApp built a reply.

Set in the environment of ``fl up`` (and so of every SuperNode and runtime it starts):

- ``FEDSTREAM_FL_HOLD_SILO``: the silo whose ClientApp holds;
- ``FEDSTREAM_FL_HOLD_DIR``: where it writes ``held-<silo>.json`` (round, rows, offsets
  after its read) before it holds.

The first ClientApp of that silo that trained on rows writes the file and then sleeps
instead of returning its reply, so a test can kill the node at exactly that point (in the
old design the offsets were committed by then). Once the file exists the hook does
nothing, so the restarted node runs normally. Unset, it costs one environment lookup.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOLD_DIR_ENV", "HOLD_SILO_ENV", "hold_after_reply"]

logger = logging.getLogger(__name__)

HOLD_SILO_ENV = "FEDSTREAM_FL_HOLD_SILO"
HOLD_DIR_ENV = "FEDSTREAM_FL_HOLD_DIR"


def hold_after_reply(
    silo: int, server_round: int, rows: int, next_offsets: Mapping[int, int]
) -> None:
    """Hold forever (until killed) the first time ``silo`` replied with rows; see module."""
    if os.environ.get(HOLD_SILO_ENV) != str(silo) or rows == 0:
        return
    marker = Path(os.environ.get(HOLD_DIR_ENV, ".")) / f"held-{silo}.json"
    if marker.exists():
        return
    doc = {"round": server_round, "rows": rows, "next_offsets": dict(next_offsets),
           "pid": os.getpid()}  # fmt: skip
    marker.write_text(json.dumps(doc))
    logger.warning("silo %d: holding after its reply of round %d (fault hook)", silo, server_round)
    while True:
        time.sleep(3600)
