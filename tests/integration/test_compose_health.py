"""docker/compose.yaml's health checks, run as written against the real local processes.

There is no Docker engine here, so compose never runs. Each service's ``healthcheck.test``
is run the way Docker runs it (``CMD``: the argv; ``CMD-SHELL``: ``/bin/sh -c``, with
compose's ``$$`` escape undone) with only the container's addresses mapped to the local
ones: the broker's port (a broker of this test, secure as the project runs it), the
worker's data directory (a real ``fedstream worker --worker-id 0``), the SuperLink's port
and the CA of ``fl up``'s PKI (same layout as the ``secrets`` volume), a SuperNode's
port. Each check must pass while its process is healthy and fail once it is stopped;
the worker's must also fail when its event loop is frozen (SIGSTOP: alive but hung).
tests/unit/test_compose.py checks that each probed port is the one the service listens on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from app.fl.kafka_io import ensure_topics
from app.kafka.broker import LocalBroker
from app.ports import free_port
from app.settings import default_cache_dir
from app.stream.harness import WorkerProcess
from tests.integration.fl_support import run_config, silo_ids, start_flower
from tests.integration.stream_support import SILOS, new_namespace

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
BIN = Path(sys.executable).parent  # `python` in a check is the image's; here the venv's
WORKER_TOUCH_S = 10.0  # the worker's progress timer touches its alive file this often


def _healthcheck(service: str) -> dict[str, Any]:
    check: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"][service]["healthcheck"]
    return check


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


class Check:
    """One service's health-check command with the container's addresses mapped to local ones."""

    def __init__(self, service: str, local: dict[str, str]) -> None:
        self.service = service
        self.spec = _healthcheck(service)
        kind, *args = self.spec["test"]
        args = [a.replace("$$", "$") for a in args]  # compose's escape of a literal $
        for container, here in local.items():
            assert any(container in a for a in args), f"{service}: {container!r} not in {args}"
            args = [a.replace(container, here) for a in args]
        assert kind in ("CMD", "CMD-SHELL"), kind
        self.argv = args if kind == "CMD" else ["/bin/sh", "-c", args[0]]
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def passes(self) -> bool:
        try:
            done = subprocess.run(self.argv, env=self.env, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def wait(self, healthy: bool, timeout_s: float) -> float:
        """Seconds until the check gives ``healthy``, run every second; fails at the timeout."""
        t0 = time.monotonic()
        while self.passes() != healthy:
            waited = time.monotonic() - t0
            assert waited < timeout_s, f"{self.service}: not {'' if healthy else 'un'}healthy " \
                                       f"after {waited:.0f} s: {self.argv}"  # fmt: skip
            time.sleep(1.0)
        return time.monotonic() - t0

    @property
    def tolerated_s(self) -> float:
        """How long Docker waits before it calls the service unhealthy: the start period,
        then ``retries`` failed checks ``interval`` apart."""
        spec = self.spec
        start = _seconds(spec.get("start_period", "0s"))
        return start + _seconds(spec["interval"]) * int(spec["retries"])


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def test_compose_health_checks_pass_on_healthy_processes_and_fail_once_stopped(
    kafka_bootstrap: str, tmp_path: Path, unique: str, deployment: Path
) -> None:
    # Prepare: a broker of this test (it is stopped), a worker, Flower (no supervisor: a
    # stopped process must stay stopped)
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(tmp_path / "own-kafka", cache, port=free_port(),
                         controller_port=free_port())  # fmt: skip
    ns = new_namespace(kafka_bootstrap, "health")
    worker = WorkerProcess(kafka_bootstrap, ns, tmp_path / "worker-data", len(SILOS),
                           worker_id="0", log_level="INFO")  # fmt: skip
    (silo,) = silo_ids(unique, 9100, 400)
    ensure_topics(kafka_bootstrap, [silo])
    stops: list[Callable[[], Any]] = []
    try:
        broker.start(timeout_s=180)
        stops.append(broker.stop)
        worker.start()
        stops.append(lambda: worker.stop(signal.SIGKILL))
        config = run_config(f"spec-{unique}", f"health-{unique}")
        dep = start_flower(deployment, kafka_bootstrap, [silo], config, supervise=False)
        node = dep.supernodes[str(silo)]
        checks = {
            "kafka": Check("kafka", {"127.0.0.1/9092": f"127.0.0.1/{broker.port}"}),
            "worker": Check("worker", {"/var/lib/fedstream/": f"{worker.data_dir}/"}),
            "superlink": Check("superlink", {"127.0.0.1:9500": f"127.0.0.1:{dep.superlink_port}",
                                             "/var/lib/fedstream-secrets/": f"{deployment}/"}),
            "supernode-0": Check("supernode-0", {"9094": str(node["port"])}),
        }  # fmt: skip

        # Execute + Assert: healthy, within what Docker tolerates (a loaded box: at least 2 min)
        took = {n: c.wait(True, max(c.tolerated_s, 120.0)) for n, c in checks.items()}
        # stop each: the worker frozen (alive, its event loop hung), the others killed
        alive = worker.data_dir / "worker" / "0" / "alive"
        frozen_at, frozen_wall = time.monotonic(), time.time()
        _kill(worker.pid, signal.SIGSTOP)
        still = checks["worker"].passes()  # its last touch is well under 60 s old
        _kill(dep.superlink_pid)
        _kill(node["pid"])
        broker.stop()
        down = {n: checks[n].wait(False, 30.0) for n in ("kafka", "superlink", "supernode-0")}
        checks["worker"].wait(False, 60 + WORKER_TOUCH_S + 30.0)
        failed_at, hung = time.time(), time.monotonic() - frozen_at
        touched = alive.stat().st_mtime  # the last touch, before the freeze
        print(f"\nhealthy after {({n: round(s, 1) for n, s in took.items()})} s; "
              f"unhealthy after {({n: round(s, 1) for n, s in down.items()})} s; "
              f"worker frozen: passed right after {still}, failed after {hung:.1f} s, "
              f"{failed_at - touched:.1f} s after its last touch")  # fmt: skip
        assert still, "the worker's check failed at once, before its threshold"
        assert touched <= frozen_wall + 1.0, "the alive file was touched while frozen"
        # unhealthy once the last touch is 60 s old (whole seconds: date +%s, stat %Y)
        assert int(touched) + 60 <= failed_at <= touched + 60 + 15, (touched, failed_at)
    except BaseException:
        print(worker.log_tail())
        raise
    finally:
        for stop in reversed(stops):
            stop()
