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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from app.fl.pki import ensure_server_tls
from app.kafka.broker_config import (
    BROKER_PRINCIPAL,
    LOG4J,
    base_properties,
    plaintext_listeners,
    secure_listeners,
    write_format_args,
    write_private,
    write_properties,
)
from app.kafka.jars import JarsError, ensure_jars
from app.kafka.principals import ADMIN, ensure_credentials
from app.kafka.security import PLAINTEXT, KafkaIdentity, client_config
from app.ports import port_free

__all__ = ["BrokerError", "BrokerStatus", "LocalBroker", "wait_for_broker"]

logger = logging.getLogger(__name__)

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


def wait_for_broker(
    bootstrap: str, timeout_s: float, alive: object = None, identity: KafkaIdentity | None = None
) -> float:
    """Block until the broker answers a metadata request; return the seconds waited.

    ``alive`` is an optional callable returning False when the broker process died;
    ``identity`` the principal asking (default: the process's, app.kafka.security).
    """
    start = time.monotonic()
    config: dict[str, Any] = client_config(bootstrap, identity, log_level=0, logger=logger)
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
        secure: bool = True,
        principals: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.home = Path(data_dir) / "kafka"
        self.secure = secure
        # the name clients reach it by (certificate SAN, advertised listener); another host
        # than loopback listens on every interface (docker/compose.yaml)
        self.host = host
        self.listen = host if host in ("127.0.0.1", "localhost") else "0.0.0.0"
        self.principals = tuple(dict.fromkeys([ADMIN, *principals]))
        self.clients_dir = self.home / "clients"
        self.identities: dict[str, KafkaIdentity] = {}
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
        return f"{self.host}:{self.port}"

    # -- jars -------------------------------------------------------------------------
    def ensure_jars(self) -> bool:
        """Resolve the broker jars into the cache; return True if it downloaded anything."""
        try:
            return ensure_jars(self.libs, self.version)
        except JarsError as exc:
            raise BrokerError(str(exc)) from None

    def identity(self, principal: str = ADMIN) -> KafkaIdentity:
        """The client identity of ``principal`` (anonymous plaintext on an insecure broker)."""
        if not self.secure:
            return PLAINTEXT
        if principal not in self.identities:
            self.identities.update(self._credentials([principal]))
        return self.identities[principal]

    def _credentials(self, names: Sequence[str]) -> dict[str, KafkaIdentity]:
        tls = ensure_server_tls(self.data_dir, self._hosts(), name="kafka")
        return ensure_credentials(self.clients_dir, names, self.bootstrap, tls.ca)

    def _hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost")))

    # -- configuration ----------------------------------------------------------------
    def configure(self, format_args: Path | None = None) -> Path:
        """Write the broker's configuration, TLS files and every principal's client config
        without starting it (a broker in a container: docker/compose.yaml), and the
        ``kafka-storage format`` argument file (``@<file>``; default ``format.args`` in the
        broker's home); returns that file."""
        self._write_config()
        return self._write_format_args(format_args or self.home / "format.args")

    def _write_format_args(self, path: Path) -> Path:
        # SCRAM users exist before the first start (KIP-900); the broker's own one too
        names = (BROKER_PRINCIPAL, *self.principals) if self.secure else ()
        users = {name: self.identity(name) for name in names}
        return write_format_args(path, self.properties, self._cluster_id(), users)

    def _mode(self) -> str:
        return "sasl_ssl" if self.secure else "plaintext"

    def _check_mode(self) -> None:
        marker = self.home / "security"
        if (self.storage / "meta.properties").exists() and marker.exists():
            was = marker.read_text().strip()
            if was != self._mode():
                raise BrokerError(
                    f"the broker in {self.home} was set up {was}; start it the same way "
                    f"({'--insecure' if was == 'plaintext' else 'without --insecure'}) or "
                    "delete that directory for a fresh one"
                )

    def _security_props(self) -> dict[str, str]:
        if not self.secure:
            return plaintext_listeners(self.listen, self.host, self.port, self.controller_port)
        tls = ensure_server_tls(self.data_dir, self._hosts(), name="kafka")
        keystore = self.home / "tls" / "keystore.pem"
        keystore.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Kafka's PEM keystore: the private key (PKCS#8) followed by the chain
        write_private(keystore, tls.key.read_bytes() + tls.cert.read_bytes())
        return secure_listeners(self.listen, self.host, self.port, self.controller_port,
                                keystore, tls.ca, self.identity(BROKER_PRINCIPAL))  # fmt: skip

    def _write_config(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        props = base_properties(self.controller_port, self.storage)
        write_properties(self.properties, {**props, **self._security_props()})
        (self.home / "log4j2.properties").write_text(
            LOG4J.format(log=self.home / "server.log", level="INFO")
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
        args = self._write_format_args(self.home / ".format.args")
        try:
            done = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"@{args}"),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        finally:
            args.unlink(missing_ok=True)  # it holds the initial passwords
        if done.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed: {done.stderr.strip()[-300:]}")
        (self.home / "security").write_text(self._mode())

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
        admin = self.identity(ADMIN)
        if self.pid() is not None:
            wait_for_broker(self.bootstrap, timeout_s, identity=admin)
            self._ensure_principals()
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
        self._check_mode()
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
            wait_for_broker(
                self.bootstrap, timeout_s, alive=lambda: proc.poll() is None, identity=admin
            )
            self._ensure_principals()
        except BrokerError as exc:
            tail = self.tail(8)
            self.stop()
            raise BrokerError(f"{exc}. Last log lines:\n{tail}") from None
        return True, time.monotonic() - began

    def _ensure_principals(self) -> None:
        """Principals added since the storage was formatted get their SCRAM user now."""
        if not self.secure:
            return
        from app.kafka.access import ensure_users

        names = {name: self.identity(name) for name in self.principals}
        ensure_users(AdminClient(client_config(self.bootstrap, self.identity(ADMIN))), names)

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
