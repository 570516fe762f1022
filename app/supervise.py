"""Keep child processes alive: restart with backoff, log every restart, stop by process group.

:class:`Supervised` is one process (a SuperNode, a warm runtime, the demo's worker). It
is started in its own session; :meth:`Supervised.check` restarts it when it has exited,
after a backoff that doubles per quick failure (1 s, 2 s, 4 s ... up to 30 s) and resets
once a run lasted a minute. A process started elsewhere can be *adopted* by pid (its
liveness is then read from ``/proc``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RestartBackoff", "Supervised", "pid_alive", "stop_family"]

logger = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def stop_family(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM ``pid`` and its descendants, SIGKILL what is left after ``timeout_s``."""
    if not pid_alive(pid):
        return False
    tree, family, todo = _children(), [pid], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            family.append(child)
            todo.append(child)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + timeout_s
        while any(pid_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not any(pid_alive(p) for p in family):
            break
    return True


@dataclass
class RestartBackoff:
    """Seconds to wait before a restart: doubles per quick failure, resets after ``stable_s``."""

    initial_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0
    current_s: float = 0.0

    def after_exit(self, ran_s: float) -> float:
        if ran_s >= self.stable_s or self.current_s == 0.0:
            self.current_s = self.initial_s
        else:
            self.current_s = min(self.current_s * 2, self.max_s)
        return self.current_s


@dataclass
class Supervised:
    """One supervised process; ``command`` is called at every (re)start."""

    name: str
    command: Callable[[], Sequence[str]]
    log: Path
    env: dict[str, str] | None = None
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    pid: int | None = None
    restarts: int = 0
    last_restart: float | None = None  # wall clock
    last_exit: int | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _started: float = 0.0  # monotonic
    _due: float | None = None  # monotonic time of the pending restart
    _stopped: bool = False  # stopped on purpose: not restarted until started again

    def start(self) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                list(self.command()), stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        self.pid, self._started, self._due = self._proc.pid, time.monotonic(), None
        self._stopped = False
        return self.pid

    def adopt(self, pid: int) -> None:
        """Watch a process started elsewhere (e.g. by ``fl up`` before the supervisor)."""
        self.pid, self._proc, self._started = pid, None, time.monotonic()

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def check(self) -> bool:
        """Restart the process if it exited and its backoff is over; True if it restarted."""
        if self.pid is None or self._stopped or self.alive():
            return False
        now = time.monotonic()
        if self._due is None:
            self.last_exit = self.exit_code()
            wait = self.backoff.after_exit(now - self._started)
            self._due = now + wait
            how = "exited" if self.last_exit is None else f"exited with {self.last_exit}"
            logger.warning("%s (pid %s) %s; restarting in %.0f s", self.name, self.pid, how, wait)
        if now < self._due:
            return False
        old = self.pid
        self.start()
        self.restarts += 1
        self.last_restart = time.time()
        logger.warning("%s restarted: pid %s -> %s (restart %d)", self.name, old, self.pid,
                       self.restarts)  # fmt: skip
        return True

    def describe(self) -> str:
        """Its liveness in one line for a status view (pid, restarts, the last restart)."""
        if self.pid is None:
            return "not started"
        if self._stopped:
            state = f"stopped (pid {self.pid})"
        elif self.alive():
            state = f"running (pid {self.pid})"
        elif self._due is None:  # exited since the last check
            state = f"exited (pid {self.pid})"
        else:
            how = "" if self.last_exit is None else f" with {self.last_exit}"
            wait = max(self._due - time.monotonic(), 0.0)
            state = f"exited{how} (pid {self.pid}), restart in {wait:.0f} s"
        if self.restarts and self.last_restart is not None:
            when = time.strftime("%H:%M:%S", time.localtime(self.last_restart))
            state += f", restarts {self.restarts}, last {when}"
        return state

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the process and its descendants; True if it was running."""
        self._due, self._stopped = None, True
        if self.pid is None:
            return False
        was = stop_family(self.pid, timeout_s)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)
        return was
