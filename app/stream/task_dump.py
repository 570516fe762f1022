"""Dump every asyncio task's stack to the log on SIGUSR1 (why is a worker stuck?).

A stalled worker logs nothing: its agents and its commit just wait. ``kill -USR1 <pid>``
(the test harness does it when a wait for commits times out) logs one block per task
with the line it waits on, so a stall can be read from the log instead of guessed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal

__all__ = ["install_task_dump", "task_stacks"]

logger = logging.getLogger(__name__)


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """Every task of ``loop`` with its current stack (innermost frame last)."""
    out = io.StringIO()
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
    out.write(f"{len(tasks)} asyncio tasks\n")
    for task in tasks:
        out.write(f"--- {task.get_name()} {task.get_coro()!r}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


def install_task_dump(loop: asyncio.AbstractEventLoop, sig: int = signal.SIGUSR1) -> None:
    """Log :func:`task_stacks` at WARNING whenever ``sig`` arrives."""
    loop.add_signal_handler(sig, lambda: logger.warning("task dump:\n%s", task_stacks(loop)))
