"""Periodic work in a Faust worker that never overlaps itself.

Faust's ``@app.timer(interval=...)`` runs its body once per interval and mode logs
"Timer <name> is overlapping" whenever a run takes longer than the interval (a commit of
a large backlog, a busy event loop on a loaded box: seen 79 times in one replay). The
work was never run twice at once; the warning only said the period could not be kept.
:func:`every` waits the interval *after* each run instead, which is what these jobs need.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["every"]

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


def every(app: Any, interval_s: float) -> Callable[[Job], Job]:
    """Decorator: run the coroutine function as an app task, ``interval_s`` between runs."""

    def register(job: Job) -> Job:
        @functools.wraps(job)
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                await job()

        app.task(loop)
        return job

    return register
