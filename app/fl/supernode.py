"""Launch Flower's stock SuperNode with a shorter idle poll.

Flower 1.42's SuperNode sleeps a fixed 3 s whenever it polls the SuperLink and finds no
message, and nothing configures it; every federated round pays up to that much before a
node even sees its train message. This launcher runs the unchanged ``flower-supernode``
entry point with only that idle sleep shortened (``FEDSTREAM_SUPERNODE_IDLE_S``, default
0.2 s). All other sleeps and all arguments are Flower's own.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from flwr.supernode import start_client_internal
from flwr.supernode.cli import flower_supernode

__all__ = ["main"]

_FLOWER_IDLE_S = 3


class _ShortIdleTime:
    """Stand-in for the ``time`` module inside start_client_internal."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s

    def sleep(self, seconds: float) -> None:
        time.sleep(self._idle_s if seconds == _FLOWER_IDLE_S else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def main() -> None:
    idle_s = float(os.environ.get("FEDSTREAM_SUPERNODE_IDLE_S", "0.2"))
    start_client_internal.time = _ShortIdleTime(idle_s)  # type: ignore[attr-defined,assignment]
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
