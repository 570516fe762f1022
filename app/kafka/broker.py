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
import secrets
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
from app.kafka.principals import ADMIN, ensure_credentials
from app.kafka.security import PLAINTEXT, SCRAM, KafkaIdentity, client_config
from app.ports import port_free

__all__ = ["BrokerError", "BrokerStatus", "LocalBroker", "wait_for_broker"]

logger = logging.getLogger(__name__)

BROKER_PRINCIPAL = "broker"  # the broker's own client (inter-broker listener), a super user
CONTROLLER_PRINCIPAL = "controller"  # its KRaft controller client (PLAIN, loopback)

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
    def configure(self) -> list[str]:
        """Write the broker's configuration, TLS files and every principal's client config
        without starting it (a broker in a container: docker/compose.yaml); returns the
        arguments of ``kafka-storage format`` after ``-c <server.properties>``."""
        self._write_config()
        args = [f"--cluster-id={self._cluster_id()}", "--ignore-formatted"]
        if self.secure:
            for name in (BROKER_PRINCIPAL, *self.principals):
                ident = self.identity(name)
                args += ["--add-scram", f"{SCRAM}=[name={name},password={ident.password}]"]
        return args

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
            return {
                "listeners": f"PLAINTEXT://{self.listen}:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "PLAINTEXT",
                "auto.create.topics.enable": "true",
            }
        tls = ensure_server_tls(self.data_dir, self._hosts(), name="kafka")
        keystore = self.home / "tls" / "keystore.pem"
        keystore.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:  # Kafka's PEM keystore: the private key (PKCS#8) followed by the chain
            os.write(fd, tls.key.read_bytes() + tls.cert.read_bytes())
        finally:
            os.close(fd)
        broker = self.identity(BROKER_PRINCIPAL)
        # The controller listener speaks SASL PLAIN on loopback (SCRAM cannot work there);
        # its one user is the broker's own controller client, re-keyed at every start.
        secret = secrets.token_urlsafe(24)
        plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                 f'username="{CONTROLLER_PRINCIPAL}" password="{secret}" '
                 f'user_{CONTROLLER_PRINCIPAL}="{secret}";')  # fmt: skip
        scram = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                 f'username="{broker.principal}" password="{broker.password}";')  # fmt: skip
        return {
            "listeners": f"SASL_SSL://{self.listen}:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://{self.host}:{self.port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:{BROKER_PRINCIPAL};User:{CONTROLLER_PRINCIPAL}",
            "auto.create.topics.enable": "false",
        }

    def _write_config(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            **self._security_props(),
            "log.dirs": str(self.storage),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "5000",
            "message.max.bytes": str(16 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
        }
        fd = os.open(self.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:  # it holds the broker's own passwords
            os.write(fd, "".join(f"{k}={v}\n" for k, v in props.items()).encode())
        finally:
            os.close(fd)
        self.properties.chmod(0o600)
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
        scram: list[str] = []
        if self.secure:  # SCRAM users exist before the first start (KIP-900)
            for name in (BROKER_PRINCIPAL, *self.principals):
                ident = self.identity(name)
                scram += ["--add-scram", f"{SCRAM}=[name={name},password={ident.password}]"]
        done = subprocess.run(
            # "--cluster-id=ID": a random id may start with "-", which argparse would
            # take for an option after a separate "-t" (it failed 1 in 64 fresh starts)
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                       "-c", str(self.properties), "--ignore-formatted", *scram),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
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
