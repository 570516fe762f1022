"""Event-loop lag of the stream worker, measured by a short periodic sleep.

A task sleeps ``TICK_S`` again and again and records how late it woke up: that lateness is
how long the loop was busy elsewhere (a long agent step, a garbage collection, the GIL held
by Faust's consumer thread). The progress log reports its p99 and maximum, which tells an
operator whether chatbot answers wait for the loop or for something outside it. It costs
about 200 wake-ups per second.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

__all__ = ["TICK_S", "LoopLag"]

TICK_S = 0.005


class LoopLag:
    """Records how late the loop wakes from ``TICK_S`` sleeps (bounded memory)."""

    def __init__(self, keep: int = 4096) -> None:
        self._lags = np.zeros(keep, np.float64)
        self._n = 0

    async def run(self) -> None:
        """Tick forever (run it as a task of the loop to watch)."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK_S)
            self.record(time.perf_counter() - t0 - TICK_S)

    def record(self, lag_s: float) -> None:
        self._lags[self._n % len(self._lags)] = max(lag_s, 0.0)
        self._n += 1

    def take_summary(self) -> str:
        """p99 and maximum lag since last asked (of the newest ``keep`` ticks)."""
        lags = self._lags[: min(self._n, len(self._lags))] * 1000
        self._n = 0
        if not len(lags):
            return "loop lag: no ticks"
        return f"loop lag p99 {np.percentile(lags, 99):.1f} ms, max {lags.max():.1f} ms"
