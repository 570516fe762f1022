"""CPU time of a process over a window of wall time, sampled from ``/proc`` (Linux).

On a shared box the wall-clock rate of a worker says as much about the other engineers'
load as about the worker; the CPU seconds the worker itself spent per event do not
depend (much) on how long it waited for a core. :class:`CpuSampler` reads the process's
``utime + stime`` (all its threads) every ``interval_s`` in a background thread;
:meth:`CpuSampler.between` interpolates the CPU seconds spent between two wall times
(e.g. the first and the last frame the worker produced), of the whole process or of its
main thread alone (the event loop, where a Faust worker's Python work runs: under a
shared box's load its share of a core, divided by its CPU per event, is the rate).
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time

__all__ = ["CpuSampler", "process_cpu_s"]

logger = logging.getLogger(__name__)

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int, tid: int | None = None) -> float | None:
    """User + system CPU seconds of ``pid`` (all threads; only thread ``tid`` if given),
    None when it is gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


class CpuSampler:
    """``(wall ms, cpu s)`` samples of one process (see the module docstring)."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.main_samples: list[tuple[float, float]] = []  # the main thread's alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sample()  # the last one, so that the samples cover everything up to now

    def _sample(self) -> bool:
        cpu = process_cpu_s(self.pid)
        if cpu is None:
            return False
        main = process_cpu_s(self.pid, self.pid)
        self.samples.append((time.time() * 1000.0, cpu))
        self.main_samples.append((self.samples[-1][0], cpu if main is None else main))
        return True

    def _run(self) -> None:
        while self._sample():
            if self._stop.wait(self.interval_s):
                return

    def at(self, wall_ms: float, main: bool = False) -> float | None:
        """CPU seconds at ``wall_ms`` (linear between samples), None outside the samples;
        ``main``: of the main thread only."""
        s = self.main_samples if main else self.samples
        if not s or wall_ms < s[0][0] or wall_ms > s[-1][0]:
            return None
        i = bisect.bisect_left(s, (wall_ms, -1.0))
        if s[i][0] == wall_ms or i == 0:
            return s[i][1]
        (t0, c0), (t1, c1) = s[i - 1], s[i]
        return c0 + (c1 - c0) * (wall_ms - t0) / (t1 - t0)

    def between(self, start_ms: float, end_ms: float, main: bool = False) -> float | None:
        """CPU seconds spent from ``start_ms`` to ``end_ms`` (None: not covered)."""
        a, b = self.at(start_ms, main), self.at(end_ms, main)
        return None if a is None or b is None else b - a
