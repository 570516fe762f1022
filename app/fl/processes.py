"""Run Flower's deployment engine locally: one SuperLink, one SuperNode per silo, `flwr run`.

Everything lives under ``<data_dir>/fl``: ``logs/`` (one file per process),
``flwr-home/`` (``FLWR_HOME`` of every process and of ``flwr run``: the connection
``config.toml`` and installed app bundles), ``run-config.toml`` (the overrides of the
run) and ``state.json`` (pids, ports, run id). Processes are started in their own
sessions and stopped by pid (with their descendants: SuperExec, ServerApp, ClientApps).
The SuperLink serves TLS with SuperNode authentication (:mod:`app.fl.flower_auth`, keys
and certificates under ``<data_dir>/pki``) unless ``insecure`` is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from confluent_kafka import KafkaException

import topics
from app.fl.config import DEFAULTS, FLConfig, FLConfigError
from app.fl.flower_auth import (
    FlowerSecurity,
    RegistrationError,
    connection_entry,
    register_supernodes,
    supernode_name,
)
from app.fl.kafka_io import silo_group
from app.fl.sites import check_site, node_bootstrap, site_relay
from app.kafka.principals import FL_SERVER, silo_principal
from app.kafka.provision import provision
from app.kafka.security import current as kafka_identity
from app.kafka.security import sibling
from app.ports import port_free
from app.supervise import pid_alive, stop_family

__all__ = [
    "APP_DIR",
    "FLDeployment",
    "FLError",
    "FLStatus",
    "check_settings",
    "down",
    "fl_env",
    "runtime_command",
    "status",
    "stop_run",
    "submit_run",
    "supernode_command",
    "up",
]

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent / "flwr_app"
CONNECTION = "fedstream"
_BIN = Path(sys.executable).parent


class FLError(RuntimeError):
    """A problem the user can act on; the message is one clear sentence."""


@dataclass
class FLDeployment:
    """What ``fl up`` started (persisted as ``state.json``)."""

    data_dir: str
    bootstrap: str
    model_name: str
    superlink_port: int
    superlink_pid: int
    # silo -> pid, port (and runtime_pid: its warm ClientApp runtime, app/fl/warm_runtime.py;
    # restarts, last_restart: written by the supervisor, app/fl/supervisor.py)
    supernodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    secure: bool = True  # TLS + SuperNode authentication (False: `fl up --insecure`)
    warm: bool = True
    commands: dict[str, list[str]] = field(default_factory=dict)  # how to restart each
    supervisor_pid: int = 0
    kafka_clients: str = ""  # the principals' Kafka client configs ("" = plaintext Kafka)

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "fl"

    def pids(self) -> dict[str, int]:
        out = {"superlink": self.superlink_pid}
        if self.supervisor_pid:
            out["supervisor"] = self.supervisor_pid
        for silo, node in self.supernodes.items():
            out[f"supernode-{silo}"] = node["pid"]
            if "runtime_pid" in node:
                out[f"runtime-{silo}"] = node["runtime_pid"]
        return out

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Atomic: `up` and the supervisor read it while the other writes (a plain write_text
        # let a reader see an empty file: JSONDecodeError in `fl up` under load).
        tmp = self.root / f"state.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        os.replace(tmp, self.root / "state.json")

    @classmethod
    def load(cls, data_dir: Path) -> FLDeployment | None:
        path = Path(data_dir) / "fl" / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def fl_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{_BIN}{os.pathsep}{env.get('PATH', '')}"  # flower-superexec, flwr-*app
    env["FLWR_HOME"] = str(root / "flwr-home")
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.1"  # default 1 s, paid every round
    env["PYTHONUNBUFFERED"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"  # Flower reports usage events by default
    # Each message runs in a new ClientApp process: keep XLA's compilations across them.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return env


_alive = pid_alive


def check_settings(
    bootstrap: str,
    silo_ids: Sequence[int],
    run_config: Mapping[str, Any],
    site_kafka: Mapping[int, Path] | None = None,
) -> FLConfig:
    """Validate the run config and the broker's topics before starting anything; a silo
    of ``site_kafka`` (its own cluster) is checked there, as its own principal."""
    try:
        cfg = FLConfig.from_run_config({**DEFAULTS, **run_config})
    except FLConfigError as exc:
        raise FLError(str(exc)) from None
    from confluent_kafka.admin import AdminClient

    from app.kafka.security import client_config

    try:
        admin = AdminClient(client_config(bootstrap))
        existing = set(admin.list_topics(timeout=10).topics)
    except Exception as exc:
        raise FLError(f"could not reach Kafka at {bootstrap}: {exc}") from None
    sites = dict(site_kafka or {})
    needed = [topics.silo_batches(s) for s in silo_ids if s not in sites]
    missing = [t for t in [*needed, topics.MODEL_GLOBAL, topics.FL_METRICS] if t not in existing]
    if missing:
        raise FLError(
            f"topic(s) {', '.join(missing)} missing on the broker at {bootstrap}; "
            "run `fedstream topics apply` with the same --silos first"
        )
    for silo, path in sites.items():
        try:
            check_site(silo, path)
        except ValueError as exc:  # SiteError, or an unreadable client config
            raise FLError(str(exc)) from None
    return cfg


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> int:
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


def _wait_health(port: int, pid: int, security: FlowerSecurity, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    url, context = f"{security.scheme}://127.0.0.1:{port}/health", security.ssl_context()
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise FLError(f"the SuperLink exited at start; see its log (port {port})")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise FLError(f"the SuperLink did not become healthy on port {port} in {timeout_s:.0f} s")


def up(
    *,
    data_dir: Path,
    bootstrap: str,
    silo_ids: Sequence[int],
    superlink_port: int,
    supernode_base_port: int,
    run_config: Mapping[str, Any] | None = None,
    warm_clients: bool = True,
    insecure: bool = False,
    supervise: bool = True,
    site_kafka: Mapping[int, Path] | None = None,
) -> FLDeployment:
    """Start a SuperLink and one SuperNode per silo, write the connection, submit the run.

    ``warm_clients`` (default): each SuperNode runs with ``--isolation process`` next to a
    long-lived ClientApp runtime (app/fl/warm_runtime.py); otherwise Flower's stock
    SuperExec starts a new ClientApp process per message. ``insecure``: plaintext and no
    SuperNode authentication (throwaway runs only); by default TLS from the federation's
    CA and every SuperNode registered with its own key pair.
    ``supervise`` (default) starts
    app/fl/supervisor.py, which restarts SuperNodes and runtimes that die.
    ``site_kafka`` maps a silo to its principal's client config on the silo's own cluster
    (a site with its own Kafka): that SuperNode reads from there, and the site's admin
    grants its group (``fedstream topics apply`` on the site); other silos use the
    operator's cluster ``bootstrap`` and their config beside the operator's.
    """
    sites = {int(s): Path(p) for s, p in (site_kafka or {}).items()}
    server_kafka = sibling(FL_SERVER)  # beside the operator's own client config
    overrides = {**(run_config or {}), "bootstrap": bootstrap,
                 "kafka-config": str(server_kafka or "")}  # fmt: skip
    cfg = check_settings(bootstrap, silo_ids, overrides, sites)
    local = [s for s in silo_ids if s not in sites]
    # each silo principal may read its topics under the model's group (and nothing else)
    try:
        provision(bootstrap, "", local, (), {s: silo_group(cfg.model_name, s) for s in local},
                  stream=False, prune=("fl",))  # fmt: skip
    except (RuntimeError, KafkaException) as exc:
        raise FLError(f"could not grant the silos their Kafka access: {exc}") from None
    current = FLDeployment.load(data_dir)
    if current is not None and any(_alive(p) for p in current.pids().values()):
        raise FLError(f"federated training already runs from {current.root}; run `fl down` first")
    ports = [superlink_port] + [supernode_base_port + i for i in range(len(silo_ids))]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise FLError(f"port(s) {', '.join(map(str, busy))} already in use; choose other ports")
    root = Path(data_dir) / "fl"
    env = fl_env(root)
    logs = root / "logs"
    security = FlowerSecurity.create(Path(data_dir), insecure)
    superlink = [
        str(_BIN / "flower-superlink"),
        *security.superlink_args(),
        "--host",
        "127.0.0.1",
        "--port",
        str(superlink_port),
        "--disable-runtime-dependency-installation",
    ]
    dep = FLDeployment(
        str(data_dir),
        bootstrap,
        cfg.model_name,
        superlink_port,
        _spawn(superlink, logs / "superlink.log", env),
        secure=not security.insecure,
    )
    operator = kafka_identity()
    if operator.secure and operator.path is not None:
        dep.kafka_clients = str(operator.path.parent)
    dep.save()
    try:
        _wait_health(superlink_port, dep.superlink_pid, security)
        _write_connection(root, superlink_port, security)
        keys = {silo: security.node_keys(Path(data_dir), silo) for silo in silo_ids}
        _register(root, {supernode_name(s): k.public for s, k in keys.items() if k is not None})
        dep.warm = warm_clients
        for i, silo in enumerate(silo_ids):
            port = supernode_base_port + i
            kafka_config = sites.get(silo) or sibling(silo_principal(silo))
            cluster = node_bootstrap(sites[silo]) if silo in sites else bootstrap
            cmd = supernode_command(
                cluster, silo, port, superlink_port, warm_clients,
                security.supernode_args(keys[silo]), kafka_config, site_relay(silo, sites),
            )  # fmt: skip
            dep.commands[f"supernode-{silo}"] = cmd
            pid = _spawn(cmd, logs / f"supernode-{silo}.log", env)
            dep.supernodes[str(silo)] = {"pid": pid, "port": port}
            if warm_clients:
                dep.supernodes[str(silo)]["runtime_pid"] = _spawn(
                    runtime_command(port, pid), logs / f"runtime-{silo}.log", env
                )
            dep.save()
        dep.run_ids.append(submit_run(dep, overrides))
        dep.save()
        if supervise:  # from here on only the supervisor writes state.json
            _start_supervisor(dep, env)
    except BaseException:
        down(Path(data_dir))
        raise
    logger.info(
        "federated training up: SuperLink :%d, %d SuperNodes, run %s (logs in %s)",
        superlink_port,
        len(silo_ids),
        dep.run_ids[-1],
        logs,
    )
    return dep


def _start_supervisor(dep: FLDeployment, env: dict[str, str], timeout_s: float = 30.0) -> None:
    cmd = [sys.executable, "-m", "app.fl.supervisor", "--data-dir", dep.data_dir]
    pid = _spawn(cmd, dep.root / "logs" / "supervisor.log", env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # it writes its pid once it watches everything
        current = FLDeployment.load(Path(dep.data_dir))
        if current is not None and current.supervisor_pid == pid:
            dep.supervisor_pid = pid
            return
        if not _alive(pid):
            raise FLError("the supervisor exited at start; see logs/supervisor.log")
        time.sleep(0.1)
    raise FLError(f"the supervisor did not start within {timeout_s:.0f} s")


def _write_connection(root: Path, port: int, security: FlowerSecurity) -> None:
    home = root / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    entry = connection_entry(f"127.0.0.1:{port}", security)
    doc = {"superlink": {"default": CONNECTION, CONNECTION: entry}}
    (home / "config.toml").write_text(tomli_w.dumps(doc))


def _register(root: Path, public_keys: Mapping[str, Path]) -> None:
    if not public_keys:
        return
    try:
        register_supernodes(_BIN / "flwr", CONNECTION, public_keys, fl_env(root))
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
        str(_BIN / "flwr"),
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
    cmd = [str(_BIN / "flwr"), "stop", run_id, CONNECTION, "--format", "json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=fl_env(dep.root), timeout=60, check=False
    )
    if proc.returncode != 0:
        raise FLError(f"`flwr stop {run_id}` failed: {(proc.stderr or proc.stdout).strip()[-200:]}")


def down(data_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """SIGTERM the SuperNodes, then the SuperLink (with descendants); SIGKILL what is left."""
    dep = FLDeployment.load(data_dir)
    if dep is None:
        return []
    stopped = []
    if dep.supervisor_pid and stop_family(dep.supervisor_pid, timeout_s):
        stopped.append("supervisor")  # first: it would restart the rest
        dep = FLDeployment.load(data_dir) or dep  # it may have restarted processes
    named = dep.pids()
    named.pop("supervisor", None)
    order = [n for n in named if n.startswith("runtime-")]
    order += [n for n in named if n.startswith("supernode-")] + ["superlink"]
    for name in order:
        if stop_family(named[name], timeout_s):
            stopped.append(name)
    (dep.root / "state.json").unlink(missing_ok=True)
    logger.info("federated training down: stopped %s", ", ".join(stopped) or "nothing")
    return stopped


@dataclass(frozen=True)
class FLStatus:
    """Processes and the latest round of a local deployment."""

    processes: dict[str, bool]
    run_ids: list[str]
    latest: dict[str, Any] | None
    secure: bool = True
    restarts: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    """SuperNode name -> (restarts, wall-clock time of the last one) as the supervisor saw."""


def status(data_dir: Path, with_metrics: bool = True) -> FLStatus | None:
    """Which processes live, and the newest ``fl.metrics`` document of the model."""
    dep = FLDeployment.load(data_dir)
    if dep is None:
        return None
    latest = None
    if with_metrics:
        from app.fl.kafka_io import read_metrics

        docs = read_metrics(dep.bootstrap, dep.model_name)
        latest = docs[-1] if docs else None
    restarts = {
        f"supernode-{silo}": (int(node.get("restarts", 0)), node.get("last_restart"))
        for silo, node in dep.supernodes.items()
    }
    alive = {n: _alive(p) for n, p in dep.pids().items()}
    return FLStatus(alive, dep.run_ids, latest, dep.secure, restarts)
