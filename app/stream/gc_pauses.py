"""Keep Python's full garbage collections off the chatbot's critical path.

A full (generation 2) collection walks every container object of the process while the
event loop waits. Measured in a worker under ``fedstream bench chat``: ~130 ms about every
10-20 s, and every chatbot request that arrived meanwhile waited for it.

- :func:`settle_after_startup` moves the objects alive once the worker has started
  (Faust, aiokafka, numpy, the app: ~190,000) into the permanent generation
  (``gc.freeze``), so a full collection walks only what was created since (~30 ms), and
  turns off *automatic* full collections: with a smaller old generation, Python's
  "25 % new survivors" rule triggered them two or three times per 10 s.
- The worker runs :func:`collect_old_garbage` on a timer instead (every
  ``FULL_GC_INTERVAL_S``), so cyclic garbage among old objects still goes, at a known rate.
  Young generations are collected automatically as usual.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

__all__ = ["FULL_GC_INTERVAL_S", "collect_old_garbage", "gc_pauses", "settle_after_startup"]

logger = logging.getLogger(__name__)

FULL_GC_INTERVAL_S = 60.0
_NO_AUTOMATIC_FULL = 1 << 30  # gen-1 collections before an automatic full one: never


class GCPauses:
    """Full collections and the longest pause since last asked (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.count = 0
        self.longest_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.longest_s = max(self.longest_s, time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def take_summary(self) -> str:
        text = f"{self.count} full GC, longest {self.longest_s * 1000:.1f} ms"
        self.count, self.longest_s = 0, 0.0
        return text


gc_pauses = GCPauses()


def collect_old_garbage() -> float:
    """One full collection; returns its duration in seconds."""
    t0 = time.perf_counter()
    gc.collect()
    return time.perf_counter() - t0


def settle_after_startup(worker: Any) -> None:
    """Freeze startup objects and hand full collections to the timer, once started.

    Wraps the ``faust.Worker``'s ``on_startup_finished`` (Faust calls it after table
    recovery; the worker hands its own method to the app at start, so the instance
    attribute is used).
    """
    started = worker.on_startup_finished

    async def on_startup_finished() -> None:
        await started()
        gc.collect()
        gc.freeze()
        young, middle, _full = gc.get_threshold()
        gc.set_threshold(young, middle, _NO_AUTOMATIC_FULL)
        logger.info(
            "%d startup objects frozen; full GC every %.0f s by timer",
            gc.get_freeze_count(),
            FULL_GC_INTERVAL_S,
        )

    worker.on_startup_finished = on_startup_finished
    gc_pauses.install()
