"""Dump every asyncio task's await chain and every thread's stack on SIGUSR1.

A stalled worker logs nothing: its agents and its commit just wait. ``kill -USR1 <pid>``
(the test harness does it when a wait for commits times out) logs each task of the
worker's event loops with the whole chain of awaits down to the line it waits on, and
the stack of every thread (Faust runs the Kafka consumer in a thread with its own loop),
so a stall can be read from the log instead of guessed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["await_chain", "install_task_dump", "task_stacks"]

logger = logging.getLogger(__name__)


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``file:line in function`` of each coroutine the task waits through, outermost first."""
    out: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(64):
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            frame = getattr(obj, "gi_frame", None)
        if frame is None:
            if obj is not None and not asyncio.iscoroutine(obj):
                out.append(f"  awaiting {obj!r}"[:300])
            break
        out.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        nxt = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None)
        if nxt is None:
            nxt = getattr(obj, "gi_yieldfrom", None)
        if isinstance(nxt, asyncio.Task):  # awaiting another task: say which
            out.append(f"  awaiting task {nxt.get_name()}")
            break
        obj = nxt
    return out


def task_stacks(loops: Iterable[asyncio.AbstractEventLoop]) -> str:
    """Every task of ``loops`` with its await chain, then every thread's stack."""
    out = io.StringIO()
    for loop in loops:
        tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        out.write(f"=== loop {id(loop):#x}: {len(tasks)} asyncio tasks\n")
        for task in tasks:
            out.write(f"--- {task.get_name()}\n" + "\n".join(await_chain(task)) + "\n")
    for ident, frame in sys._current_frames().items():
        out.write(f"=== thread {ident}\n" + "".join(traceback.format_stack(frame, limit=25)))
    return out.getvalue()


def install_task_dump(
    loop: asyncio.AbstractEventLoop,
    other_loops: Callable[[], Iterable[Any]] = lambda: (),
    sig: int = signal.SIGUSR1,
) -> None:
    """Log :func:`task_stacks` of ``loop`` and ``other_loops()`` at WARNING on ``sig``."""

    def dump() -> None:
        loops = [loop, *(x for x in other_loops() if x is not None and x is not loop)]
        logger.warning("task dump:\n%s", task_stacks(loops))

    loop.add_signal_handler(sig, dump)
