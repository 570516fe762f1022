"""Run Flower's deployment engine locally: one SuperLink, one SuperNode per silo, `flwr run`.

Everything lives under ``<data_dir>/fl``: ``logs/`` (one file per process),
``flwr-home/`` (``FLWR_HOME`` of every process and of ``flwr run``: the connection
``config.toml`` and installed app bundles), ``run-config.toml`` (the overrides of the
run) and ``state.json`` (pids, ports, run id; :mod:`app.fl.local_state`). Processes are
started in their own sessions (command lines and ``flwr`` calls: :mod:`app.fl.launch`) and
stopped by pid (with their descendants: SuperExec, ServerApp, ClientApps).
The SuperLink serves TLS with SuperNode authentication (:mod:`app.fl.flower_auth`, keys
and certificates under ``<data_dir>/pki``) unless ``insecure`` is asked for.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

import topics
from app.fl.config import DEFAULTS, FLConfig, FLConfigError
from app.fl.flower_auth import FlowerSecurity, supernode_name
from app.fl.kafka_io import silo_group
from app.fl.launch import (
    APP_DIR,
    BIN,
    CONNECTION,
    fl_env,
    register_keys,
    runtime_command,
    spawn,
    stop_run,
    submit_run,
    supernode_command,
    wait_health,
    write_connection,
)
from app.fl.local_state import FLDeployment, FLError
from app.fl.sites import check_site, node_bootstrap, site_relay
from app.kafka.principals import FL_SERVER, silo_principal
from app.kafka.provision import provision
from app.kafka.security import current as kafka_identity
from app.kafka.security import sibling
from app.ports import port_free
from app.supervise import pid_alive, stop_family

__all__ = [  # the launch and state names are re-exported: callers keep one import
    "APP_DIR",
    "CONNECTION",
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
        str(BIN / "flower-superlink"),
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
        spawn(superlink, logs / "superlink.log", env),
        secure=not security.insecure,
    )
    operator = kafka_identity()
    if operator.secure and operator.path is not None:
        dep.kafka_clients = str(operator.path.parent)
    dep.save()
    try:
        wait_health(superlink_port, dep.superlink_pid, security)
        write_connection(root, superlink_port, security)
        keys = {silo: security.node_keys(Path(data_dir), silo) for silo in silo_ids}
        register_keys(root, {supernode_name(s): k.public for s, k in keys.items() if k is not None})
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
            pid = spawn(cmd, logs / f"supernode-{silo}.log", env)
            dep.supernodes[str(silo)] = {"pid": pid, "port": port}
            if warm_clients:
                dep.supernodes[str(silo)]["runtime_pid"] = spawn(
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
    pid = spawn(cmd, dep.root / "logs" / "supervisor.log", env)
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
