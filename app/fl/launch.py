"""Command lines and subprocesses of Flower's deployment engine, and the ``flwr`` CLI calls.

What :mod:`app.fl.processes` (``fl up``/``fl down``) and the supervisor start: the
SuperNode and warm-runtime command lines, the environment of every Flower process,
waiting for the SuperLink's health, the CLI connection, SuperNode registration and
``flwr run``/``flwr stop``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

import topics
from app.fl.flower_auth import (
    FlowerSecurity,
    RegistrationError,
    connection_entry,
    register_supernodes,
)
from app.fl.local_state import FLDeployment, FLError
from app.kafka.principals import FL_SERVER
from app.kafka.security import sibling
from app.supervise import pid_alive

__all__ = [
    "APP_DIR",
    "BIN",
    "CONNECTION",
    "fl_env",
    "register_keys",
    "runtime_command",
    "spawn",
    "stop_run",
    "submit_run",
    "supernode_command",
    "wait_health",
    "write_connection",
]

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent / "flwr_app"
CONNECTION = "fedstream"
BIN = Path(sys.executable).parent


def fl_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # flower-superexec, flwr-*app
    env["FLWR_HOME"] = str(root / "flwr-home")
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.1"  # default 1 s, paid every round
    env["PYTHONUNBUFFERED"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"  # Flower reports usage events by default
    # Each message runs in a new ClientApp process: keep XLA's compilations across them.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return env


def spawn(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return proc.pid


def supernode_command(
    bootstrap: str,
    silo: int,
    port: int,
    superlink_port: int,
    warm: bool,
    security_args: Sequence[str] = ("--insecure",),
    kafka_config: Path | None = None,
    model_kafka_config: Path | None = None,
) -> list[str]:
    """The command line of silo ``silo``'s SuperNode (``fl up``, the supervisor).

    ``bootstrap`` and ``kafka_config`` (the silo principal's client config, which its
    ClientApp uses) are this node's own: its site's cluster and CA, which need not be the
    operator's (``fl up --silo-kafka``). ``model_kafka_config`` (a site's ``site-<id>``)
    makes its ClientApp relay each global model to that cluster (app/fl/site_model.py).
    """
    node_config = f"silo-id={silo} topic='{topics.silo_batches(silo)}' bootstrap='{bootstrap}'"
    if kafka_config is not None:
        node_config += f" kafka-config='{kafka_config}'"
    if model_kafka_config is not None:
        node_config += f" model-kafka-config='{model_kafka_config}'"
    cmd = [
        sys.executable,  # Flower's SuperNode, with a shorter idle poll (see module)
        "-m",
        "app.fl.supernode",
        *security_args,
        "--superlink",
        f"127.0.0.1:{superlink_port}",
        "--port",
        str(port),
        "--node-config",
        node_config,
    ]
    return cmd + (["--isolation", "process"] if warm else [])


def runtime_command(port: int, supernode_pid: int) -> list[str]:
    """The command line of the warm ClientApp runtime next to the SuperNode on ``port``."""
    return [
        sys.executable,
        "-m",
        "app.fl.warm_runtime",
        "--runtime-api-address",
        f"127.0.0.1:{port}",
        "--parent-pid",
        str(supernode_pid),
    ]


def wait_health(port: int, pid: int, security: FlowerSecurity, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    url, context = f"{security.scheme}://127.0.0.1:{port}/health", security.ssl_context()
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise FLError(f"the SuperLink exited at start; see its log (port {port})")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise FLError(f"the SuperLink did not become healthy on port {port} in {timeout_s:.0f} s")


def write_connection(root: Path, port: int, security: FlowerSecurity) -> None:
    home = root / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    entry = connection_entry(f"127.0.0.1:{port}", security)
    doc = {"superlink": {"default": CONNECTION, CONNECTION: entry}}
    (home / "config.toml").write_text(tomli_w.dumps(doc))


def register_keys(root: Path, public_keys: Mapping[str, Path]) -> None:
    if not public_keys:
        return
    try:
        register_supernodes(BIN / "flwr", CONNECTION, public_keys, fl_env(root))
    except RegistrationError as exc:
        raise FLError(str(exc)) from None


def submit_run(dep: FLDeployment, run_config: Mapping[str, Any]) -> str:
    """``flwr run`` the app with ``run_config`` overrides; returns the run id."""
    root = dep.root
    cfg_file = root / f"run-config-{len(dep.run_ids)}.toml"
    # the ServerApp acts on Kafka as fl-server (its client config beside the operator's)
    config = {"kafka-config": str(sibling(FL_SERVER) or ""), **run_config}
    cfg_file.write_text(tomli_w.dumps(config))
    cmd = [
        str(BIN / "flwr"),
        "run",
        str(APP_DIR),
        CONNECTION,
        "--format",
        "json",
        "--run-config",
        str(cfg_file),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=fl_env(root), timeout=120, check=False
    )
    try:
        doc = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        doc = {}
    if proc.returncode != 0 or not doc.get("success"):
        detail = (doc.get("error") or proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise FLError(f"`flwr run` failed: {' '.join(detail) or proc.returncode}")
    return str(doc["run-id"])


def stop_run(dep: FLDeployment, run_id: str) -> None:
    """``flwr stop`` one run (the ServerApp ends; SuperLink and SuperNodes keep running)."""
    cmd = [str(BIN / "flwr"), "stop", run_id, CONNECTION, "--format", "json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=fl_env(dep.root), timeout=60, check=False
    )
    if proc.returncode != 0:
        raise FLError(f"`flwr stop {run_id}` failed: {(proc.stderr or proc.stdout).strip()[-200:]}")
