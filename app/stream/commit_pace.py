"""When the worker commits, and how far processing may run ahead of the last commit.

After a SIGKILL every stream event processed since the last *confirmed* commit is
processed again (its rows repeat). A commit every second bounds that by time only: a
worker catching up after a stall processed 770 events within one stretched interval and
repeated them all. :class:`CommitPace` bounds it by a record count as well:

- a commit is *due* once ``every`` events were processed since the last offset pick
  (or, in the worker, once the commit interval passed, whichever comes first);
- the input agents wait before a batch that would put more than ``cap`` events past the
  offsets of the last commit the broker confirmed. So at most ``cap`` events repeat
  after a crash, however slow the box, the broker or the commit.

Pure asyncio, no Faust: the worker calls :meth:`add` per batch, :meth:`picked` when Faust
has picked the offsets and :meth:`confirmed` when the broker answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["RELEASE_POLL_S", "CommitPace"]

logger = logging.getLogger(__name__)

RELEASE_POLL_S = 0.2
"""How often a batch waiting for room asks whether it is released (a rebalance)."""


class CommitPace:
    """Counts stream events against the last offset pick and the last confirmed commit."""

    def __init__(self, every: int, cap: int) -> None:
        if not 0 < every <= cap:
            raise ValueError(f"need 0 < every <= cap, got every={every}, cap={cap}")
        self.every = every
        self.cap = cap
        self.processed = 0  # events handed to the pipeline since the worker started
        self._picked = 0  # ``processed`` when the offsets of the newest commit were picked
        self._confirmed = 0  # ``processed`` at the pick of the last confirmed commit
        self._due = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.waits = 0  # batches that waited for room (a commit slower than ``cap`` events)

    @property
    def unconfirmed(self) -> int:
        """Events a crash now would process again (since the last confirmed commit)."""
        return self.processed - self._confirmed

    def has_room(self, n: int) -> bool:
        """May a batch of ``n`` events be processed now? (Always, right after a commit.)"""
        return self.unconfirmed == 0 or self.unconfirmed + n <= self.cap

    async def wait_room(self, n: int, released: Callable[[], bool] = lambda: False) -> None:
        """Wait until a batch of ``n`` events fits under the cap (a commit confirmed).

        ``released()`` ends the wait early: during a rebalance Faust waits for the batch
        the agent holds before its own commit, so holding it would block the rebalance.
        """
        if self.has_room(n):
            return
        self.waits += 1
        self._due.set()  # commit now, not at the end of the interval
        while not self.has_room(n) and not released():
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), RELEASE_POLL_S)

    def add(self, n: int) -> None:
        """``n`` events were processed."""
        self.processed += n
        if self.processed - self._picked >= self.every:
            self._due.set()

    async def wait_due(self, interval_s: float) -> None:
        """Return after ``interval_s``, or sooner once ``every`` events are waiting."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._due.wait(), interval_s)

    def picked(self) -> int:
        """Faust picked the offsets to commit: what was processed so far. Returns the mark
        to pass to :meth:`confirmed`."""
        self._picked = self.processed
        self._due.clear()
        return self._picked

    def confirmed(self, mark: int) -> None:
        """The broker confirmed the commit whose offsets were picked at ``mark``."""
        if mark > self._confirmed:
            self._confirmed = mark
            self._room.set()

    def reset(self) -> None:
        """A rebalance: what was processed is committed or handed on (Faust commits then)."""
        self._picked = self._confirmed = self.processed
        self._due.clear()
        self._room.set()

    def take_summary(self) -> str:
        text = f"commit pace waits {self.waits}, unconfirmed {self.unconfirmed}"
        self.waits = 0
        return text
