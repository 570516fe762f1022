"""Supervised processes: restarted with backoff after they die, stopped with their children."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from app.supervise import RestartBackoff, Supervised, pid_alive


def test_backoff_doubles_on_quick_failures_and_resets_after_a_stable_run() -> None:
    backoff = RestartBackoff(initial_s=1.0, max_s=8.0, stable_s=60.0)
    assert [backoff.after_exit(ran_s=2.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.after_exit(ran_s=120.0) == 1.0


def test_dead_process_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    # Prepare: a child that exits at once with code 3
    proc = Supervised("short", lambda: [sys.executable, "-c", "raise SystemExit(3)"],
                      tmp_path / "short.log", backoff=RestartBackoff(initial_s=0.3))  # fmt: skip
    first = proc.start()
    deadline = time.monotonic() + 10
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)

    # Execute: the first check notes the exit, the restart waits for the backoff
    assert proc.describe() == f"exited (pid {first})"
    assert proc.check() is False
    assert proc.last_exit == 3
    waiting = proc.describe()
    time.sleep(0.35)
    restarted = proc.check()

    # Assert: each state as a status view shows it
    assert restarted and proc.pid != first and proc.restarts == 1
    assert proc.last_restart is not None
    assert waiting == f"exited with 3 (pid {first}), restart in 0 s"
    when = time.strftime("%H:%M:%S", time.localtime(proc.last_restart))
    assert proc.describe() in (f"running (pid {proc.pid}), restarts 1, last {when}",
                               f"exited (pid {proc.pid}), restarts 1, last {when}")  # fmt: skip
    proc.stop()
    assert proc.describe() == f"stopped (pid {proc.pid}), restarts 1, last {when}"


def test_stop_ends_the_process_and_its_children(tmp_path: Path) -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"  # fmt: skip
    proc = Supervised("family", lambda: [sys.executable, "-c", code], tmp_path / "family.log")
    parent = proc.start()
    deadline = time.monotonic() + 20
    while "up" not in (tmp_path / "family.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _ppid(int(p.name)) == parent]  # fmt: skip

    assert proc.stop(timeout_s=5) is True

    assert not pid_alive(parent)
    assert children and not any(pid_alive(c) for c in children)
    time.sleep(0.1)
    assert proc.check() is False and not proc.alive()  # stopped on purpose: no restart


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
