"""Local single-node Apache Kafka broker (KRaft) from Maven Central jars.

`fedstream kafka start` resolves the broker's jars once with Maven into the cache directory
(keyed by Kafka version), formats KRaft storage once in the data directory, and starts
``kafka.Kafka`` in the background. No Docker and no tarball are needed, only Java 17+ and
Maven. Deployment uses the official ``apache/kafka`` image instead (docker/compose.yaml).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from app.ports import port_free

__all__ = ["BrokerError", "BrokerStatus", "LocalBroker", "wait_for_broker"]

logger = logging.getLogger(__name__)

POM = Path(__file__).resolve().parents[2] / "docker" / "kafka" / "pom.xml"
# Kafka's own JVM performance options (kafka-run-class.sh). The serial collector used
# before paused the broker ~26 ms per young collection, which showed up in chatbot p99s.
_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


class BrokerError(RuntimeError):
    """A broker problem the user can act on; the message is one clear sentence."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    version: str
    log: Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_for_broker(bootstrap: str, timeout_s: float, alive: object = None) -> float:
    """Block until the broker answers a metadata request; return the seconds waited.

    ``alive`` is an optional callable returning False when the broker process died.
    """
    start = time.monotonic()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 0, "logger": logger}
    admin = AdminClient(config)
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return time.monotonic() - start
        except Exception as exc:
            last = exc
        if callable(alive) and not alive():
            raise BrokerError("the broker process exited during start-up; see its log")
        if time.monotonic() - start > timeout_s:
            raise BrokerError(f"no broker answered on {bootstrap} within {timeout_s:.0f} s: {last}")
        time.sleep(0.2)


class LocalBroker:
    """Manage one local broker whose files live under ``data_dir / 'kafka'``."""

    def __init__(
        self,
        data_dir: Path,
        cache_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        version: str = "4.1.1",
        heap: str = "1g",
    ) -> None:
        self.home = Path(data_dir) / "kafka"
        self.libs = Path(cache_dir) / "kafka" / version / "libs"
        self.port = port
        self.controller_port = controller_port
        self.version = version
        self.heap = heap
        self.log = self.home / "broker.log"
        self.pid_file = self.home / "broker.pid"
        self.storage = self.home / "kraft"
        self.properties = self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- jars -------------------------------------------------------------------------
    def ensure_jars(self) -> bool:
        """Resolve the broker jars into the cache; return True if it downloaded anything."""
        marker = self.libs / ".complete"
        if marker.exists():
            return False
        java, mvn = shutil.which("java"), shutil.which("mvn")
        if java is None:
            raise BrokerError("java was not found on PATH; install Java 17 or newer")
        if mvn is None:
            raise BrokerError("mvn was not found on PATH; install Apache Maven to fetch Kafka")
        if not POM.exists():
            raise BrokerError(f"the broker pom {POM} is missing; run from a fedstream checkout")
        self.libs.mkdir(parents=True, exist_ok=True)
        logger.info(
            "resolving Apache Kafka %s jars from Maven Central into %s", self.version, self.libs
        )
        cmd = [
            mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-Dkafka.version={self.version}",
            f"-DoutputDirectory={self.libs}",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise BrokerError(f"Maven could not fetch Kafka {self.version}: {' | '.join(tail)}")
        marker.write_text(self.version)
        return True

    # -- configuration ----------------------------------------------------------------
    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.storage),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.cleaner.backoff.ms": "5000",
            "message.max.bytes": str(16 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
        }
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(
            _LOG4J.format(log=self.home / "server.log", level="INFO")
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", f"-Xms{self.heap}", f"-Xmx{self.heap}", *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home}",
            "-cp", f"{self.libs}/*", main, *args,
        ]  # fmt: skip

    def _format_storage(self) -> None:
        if (self.storage / "meta.properties").exists():
            return
        cluster_id = self._cluster_id()
        done = subprocess.run(
            # "--cluster-id=ID": a random id may start with "-", which argparse would
            # take for an option after a separate "-t" (it failed 1 in 64 fresh starts)
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                       "-c", str(self.properties), "--ignore-formatted"),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed: {done.stderr.strip()[-300:]}")

    def _cluster_id(self) -> str:
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
            import base64

            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            id_file.write_text(raw)
        return id_file.read_text().strip()

    # -- lifecycle ----------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.version, self.log)

    def start(self, timeout_s: float = 90.0) -> tuple[bool, float]:
        """Start the broker if needed. Return (started_now, seconds until it answered)."""
        began = time.monotonic()
        if self.pid() is not None:
            wait_for_broker(self.bootstrap, timeout_s)
            return False, time.monotonic() - began
        for port in (self.port, self.controller_port):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} is already in use by another program; choose another port "
                    "with --port (or FEDSTREAM_KAFKA_PORT) or stop that program"
                )
        if shutil.which("java") is None:
            raise BrokerError("java was not found on PATH; install Java 17 or newer")
        self.ensure_jars()
        self._write_config()
        self._format_storage()
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI; Ctrl-C in the shell does not kill it
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_for_broker(self.bootstrap, timeout_s, alive=lambda: proc.poll() is None)
        except BrokerError as exc:
            tail = self.tail(8)
            self.stop()
            raise BrokerError(f"{exc}. Last log lines:\n{tail}") from None
        return True, time.monotonic() - began

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Graceful stop (SIGTERM, wait, then SIGKILL). Return False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap if it is our child
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            logger.warning("broker pid %s ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 40) -> str:
        """The last lines of the broker's logs (stdout and server.log)."""
        chunks = []
        for path in (self.log, self.home / "server.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"== {path} ==\n" + "\n".join(text))
        return "\n".join(chunks) or "(no broker log yet)"
