"""Keep a local Flower deployment alive: ``python -m app.fl.supervisor --data-dir DIR``.

``fl up`` starts the SuperLink, the SuperNodes and their warm runtimes, then this process
(own session, log ``logs/supervisor.log``). Every half second it checks each silo's
SuperNode and runtime (app.supervise.Supervised): a dead SuperNode is restarted with
backoff, and its runtime with it (a runtime serves one SuperNode's pid); a dead runtime
alone is restarted alone. Every restart is logged and written to ``state.json`` (pid,
restarts, last restart), which ``fl status`` reads. Requests come as files in
``requests/`` (``fl add-silo``, ``fl restart-silo``). ``fl down`` stops this process
first, then everything ``state.json`` names.

The SuperLink is watched but not restarted: it holds the run (a restarted SuperLink would
need the run submitted again); its death is logged and ``fl status`` shows it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from app.fl.kafka_io import silo_group
from app.fl.launch import fl_env, runtime_command, supernode_command
from app.fl.local_state import FLDeployment
from app.kafka.principals import ADMIN, silo_principal
from app.kafka.provision import provision
from app.kafka.security import read_client_config
from app.supervise import Supervised, pid_alive

__all__ = ["REQUESTS_DIR", "DeploymentSupervisor", "request", "wait_for"]

logger = logging.getLogger(__name__)

REQUESTS_DIR = "requests"
TICK_S = 0.5


class SiloProcesses:
    """A silo's SuperNode and (warm deployments) its runtime."""

    def __init__(self, dep: FLDeployment, silo: str, env: dict[str, str]) -> None:
        entry = dep.supernodes[silo]
        self.silo, self.port = silo, int(entry["port"])
        logs = dep.root / "logs"
        cmd = dep.commands.get(f"supernode-{silo}") or supernode_command(
            dep.bootstrap, int(silo), self.port, dep.superlink_port, dep.warm
        )
        self.node = Supervised(
            f"supernode-{silo}", lambda: cmd, logs / f"supernode-{silo}.log", env
        )
        self.runtime: Supervised | None = None
        if dep.warm:
            self.runtime = Supervised(
                f"runtime-{silo}",
                lambda: runtime_command(self.port, self.node.pid or 0),
                logs / f"runtime-{silo}.log",
                env,
            )
        self.node.restarts = int(entry.get("restarts", 0))

    def adopt(self, entry: dict[str, Any]) -> None:
        self.node.adopt(int(entry["pid"]))
        if self.runtime is not None and entry.get("runtime_pid"):
            self.runtime.adopt(int(entry["runtime_pid"]))

    def start(self) -> None:
        self.node.start()
        if self.runtime is not None:
            self.runtime.start()

    def check(self) -> bool:
        """Restart what died; True if anything was restarted."""
        if not self.node.alive() and self.runtime is not None and self.runtime.alive():
            self.runtime.stop()  # it serves the dead node's pid; it follows the new one
        if self.node.check():
            if self.runtime is not None:
                self.runtime.stop()
                self.runtime.start()
            return True
        return self.runtime is not None and self.node.alive() and self.runtime.check()

    def restart_now(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        self.node.stop()
        self.start()
        self.node.restarts += 1
        self.node.last_restart = time.time()
        logger.warning("supernode-%s restarted on request: pid %s", self.silo, self.node.pid)

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": self.node.pid, "port": self.port,
                               "restarts": self.node.restarts}  # fmt: skip
        if self.node.last_restart is not None:
            out["last_restart"] = self.node.last_restart
        if self.runtime is not None:
            out["runtime_pid"] = self.runtime.pid
            out["runtime_restarts"] = self.runtime.restarts
        return out

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        self.node.stop()


class DeploymentSupervisor:
    """Watches the processes of one deployment (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        dep = FLDeployment.load(data_dir)
        if dep is None:
            raise RuntimeError(f"no federated deployment in {data_dir}")
        self.dep = dep
        self.env = fl_env(dep.root)
        self.silos = {s: SiloProcesses(dep, s, self.env) for s in dep.supernodes}
        for silo, procs in self.silos.items():
            procs.adopt(dep.supernodes[silo])
        self.superlink_seen_alive = True
        self.stopping = False

    def save(self) -> None:
        self.dep.supernodes = {s: p.entry() for s, p in self.silos.items()}
        self.dep.supervisor_pid = os.getpid()
        self.dep.save()

    def tick(self) -> None:
        changed = False
        for procs in self.silos.values():
            changed |= procs.check()
        changed |= self._handle_requests()
        alive = pid_alive(self.dep.superlink_pid)
        if self.superlink_seen_alive and not alive:
            logger.error("the SuperLink (pid %d) exited; run `fl down` and `fl up`",
                         self.dep.superlink_pid)  # fmt: skip
        self.superlink_seen_alive = alive
        if changed:
            self.save()

    def _handle_requests(self) -> bool:
        folder = self.dep.root / REQUESTS_DIR
        changed = False
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                doc = json.loads(path.read_text())
                action, silo = str(doc["action"]), str(int(doc["silo"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.error("ignoring request %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            path.unlink(missing_ok=True)
            if action == "restart" and silo in self.silos:
                self.silos[silo].restart_now()
            elif action == "add" and silo not in self.silos:
                self._add(silo, int(doc["port"]))
                if silo not in self.silos:
                    continue
            else:
                logger.error("cannot %s silo %s (known: %s)", action, silo, sorted(self.silos))
                continue
            changed = True
        return changed

    def _add(self, silo: str, port: int) -> None:
        if getattr(self.dep, "secure", False):  # a new node needs its own registered key
            logger.error("cannot add silo %s: adding to a TLS deployment is not supported yet "
                         "(run `fl down` and `fl up` with the silo)", silo)  # fmt: skip
            return
        kafka_config = None
        if self.dep.kafka_clients:  # secure Kafka: the new silo's principal, user and ACLs
            clients = Path(self.dep.kafka_clients)
            try:
                admin = read_client_config(clients / f"{ADMIN}.conf")
                groups = {int(silo): silo_group(self.dep.model_name, int(silo))}
                provision(self.dep.bootstrap, "", [int(silo)], (), groups, admin, stream=False)
            except Exception as exc:
                logger.error("cannot add silo %s: its Kafka access failed: %s", silo, exc)
                return
            kafka_config = clients / f"{silo_principal(int(silo))}.conf"
        cmd = supernode_command(self.dep.bootstrap, int(silo), port, self.dep.superlink_port,
                                self.dep.warm, kafka_config=kafka_config)  # fmt: skip
        self.dep.commands[f"supernode-{silo}"] = cmd
        self.dep.supernodes[silo] = {"pid": 0, "port": port}
        procs = SiloProcesses(self.dep, silo, self.env)
        procs.start()
        self.silos[silo] = procs
        logger.warning("silo %s added: supernode pid %s on port %d", silo, procs.node.pid, port)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.save()
        logger.info("supervising %d silos of %s", len(self.silos), self.dep.root)
        while not self.stopping:
            self.tick()
            time.sleep(TICK_S)
        logger.info("supervisor stopped (the processes keep running until `fl down`)")

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True


def request(data_dir: Path, action: str, silo: int, **extra: Any) -> Path:
    """Ask the running supervisor to ``add`` or ``restart`` a silo."""
    folder = Path(data_dir) / "fl" / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns()}-{action}-{silo}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"action": action, "silo": silo, **extra}))
    tmp.rename(path)
    return path


def wait_for(data_dir: Path, silo: int, old_pid: int | None, timeout_s: float = 30.0) -> int:
    """Wait until the state names a live SuperNode pid for ``silo`` other than ``old_pid``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dep = FLDeployment.load(data_dir)
        entry = dep.supernodes.get(str(silo)) if dep else None
        pid = int(entry["pid"]) if entry and entry.get("pid") else 0
        if pid and pid != old_pid and pid_alive(pid):
            return pid
        time.sleep(0.2)
    raise TimeoutError(f"silo {silo} did not come up within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    DeploymentSupervisor(args.data_dir).run()


if __name__ == "__main__":
    main()
