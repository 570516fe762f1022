"""Launch Flower's stock SuperNode with two fixes applied to its receive loop.

1. Idle poll. Flower 1.42's SuperNode sleeps a fixed 3 s whenever it polls the SuperLink
   and finds no message, and nothing configures it; every federated round pays up to that
   much before a node even sees its train message. Here that idle sleep is
   ``FEDSTREAM_SUPERNODE_IDLE_S`` (default 0.2 s). All other sleeps are Flower's own.

2. A run stopped while its message is being received. The SuperNode creates the task
   for a message BEFORE it pulls the message's objects. If the run stops in between (a
   queued message of a run that ``flwr stop`` just ended), the pull raises Flower's
   ``RunNotRunningException``, a ``BaseException`` that the loop's cleanup (``except
   Exception``: delete the message, fail the task) does not catch. The task stays
   PENDING forever with objects that never arrive: stock Flower then starts a ClientApp
   process that waits for them forever, and our warm runtime (one task at a time) would
   never serve the next run. Here that exception reaches the cleanup as an ordinary
   error, so the task is failed and the message deleted, as for any failed receive.

All arguments are Flower's own (``flower-supernode --help``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from flwr.supercore.run import RunNotRunningException
from flwr.supernode import start_client_internal
from flwr.supernode.cli import flower_supernode

__all__ = ["RunStoppedWhileReceiving", "main", "receive_without_orphan_tasks"]

_FLOWER_IDLE_S = 3


class _ShortIdleTime:
    """Stand-in for the ``time`` module inside start_client_internal."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s

    def sleep(self, seconds: float) -> None:
        time.sleep(self._idle_s if seconds == _FLOWER_IDLE_S else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class RunStoppedWhileReceiving(RuntimeError):
    """The run of a message stopped while the SuperNode was pulling the message."""


def _stop_as_error(call: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any) -> Any:
        try:
            return call(*args)
        except RunNotRunningException as exc:
            raise RunStoppedWhileReceiving(
                "its run stopped while the message was being received"
            ) from exc

    return guarded


def receive_without_orphan_tasks(pull_and_store: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Flower's ``_pull_and_store_message`` (see fix 2 in the module docstring)."""

    def wrapper(**kwargs: Any) -> Any:
        for name in ("pull_object", "confirm_message_received"):
            kwargs[name] = _stop_as_error(kwargs[name])
        return pull_and_store(**kwargs)

    return wrapper


def main() -> None:
    idle_s = float(os.environ.get("FEDSTREAM_SUPERNODE_IDLE_S", "0.2"))
    sci: Any = start_client_internal
    sci.time = _ShortIdleTime(idle_s)
    sci._pull_and_store_message = receive_without_orphan_tasks(sci._pull_and_store_message)
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
