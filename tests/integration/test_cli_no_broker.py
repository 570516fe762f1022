"""With no broker, every command that needs one fails fast, non-zero, in a few lines.

Before: ``topics list`` printed 581 librdkafka lines in 33 s, ``ask --timeout 2`` ~205
lines in 15 s, and ``tail`` never ended.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.ports import free_port

TIMEOUT_S = 1.0
STARTUP_ALLOWANCE_S = 45.0  # Python + imports (JAX for some) on a loaded 2-core box
COMMANDS = [
    ["topics", "list"],
    ["topics", "apply"],
    ["produce", "synthetic", "--events", "10", "--no-progress"],
    ["worker"],
    ["tail", "silo.0.batches", "--limit", "1"],
    ["ask", "cust-000001", "--timeout", str(TIMEOUT_S)],
    ["status"],
    ["status", "--wait-drained"],
    ["fl", "up"],
    ["baseline"],
    ["bench", "chat", "--seconds", "2"],
    ["bench", "fl", "--rounds", "1"],
]


def _run(args: list[str], bootstrap: str, data_dir: Path) -> tuple[int, list[str], float]:
    cmd = [sys.executable, "-m", "app", "--bootstrap", bootstrap, "--data-dir", str(data_dir),
           "--timeout", str(TIMEOUT_S), *args]  # fmt: skip
    env = {**os.environ, "COLUMNS": "80"}
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, lines, time.monotonic() - start


def test_every_command_fails_fast_without_a_broker(tmp_path: Path) -> None:
    # Prepare: a port nobody listens on
    bootstrap = f"127.0.0.1:{free_port()}"

    # Execute (three at a time: the box has two cores)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda a: (a, *_run(a, bootstrap, tmp_path)), COMMANDS))

    # Assert
    for args, code, lines, seconds in results:
        name = " ".join(args)
        assert code != 0, f"{name}: exit 0 without a broker: {lines}"
        assert len(lines) <= 3, f"{name}: {len(lines)} lines: {lines[:10]}"
        assert any("could not reach Kafka" in line for line in lines), f"{name}: {lines}"
        assert seconds < TIMEOUT_S + STARTUP_ALLOWANCE_S, f"{name}: took {seconds:.1f} s"


def test_librdkafka_lines_only_with_debug(tmp_path: Path) -> None:
    # Prepare
    bootstrap = f"127.0.0.1:{free_port()}"

    # Execute
    code, lines, _ = _run(["topics", "list"], bootstrap, tmp_path)
    code_dbg, lines_dbg, _ = _run(["--log-level", "debug", "topics", "list"], bootstrap, tmp_path)

    # Assert: quiet by default, librdkafka's own lines appear under --log-level debug
    assert code != 0 and code_dbg != 0
    assert not any("Connection refused" in line for line in lines)
    assert any("Connection refused" in line for line in lines_dbg)
