"""The local broker's files: ``server.properties``, its log4j config, the storage-format
argument file.

:class:`app.kafka.broker.LocalBroker` decides *what* (ports, host, secure or not, who the
principals are); this module spells it as Kafka wants it. Files that hold a password
(the properties, the keystore, the format arguments) are written 0600.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from app.kafka.principals import ADMIN
from app.kafka.security import SCRAM, KafkaIdentity

__all__ = [
    "BROKER_PRINCIPAL",
    "CONTROLLER_PRINCIPAL",
    "LOG4J",
    "base_properties",
    "plaintext_listeners",
    "secure_listeners",
    "write_format_args",
    "write_private",
    "write_properties",
]

logger = logging.getLogger(__name__)

BROKER_PRINCIPAL = "broker"  # the broker's own client (inter-broker listener), a super user
CONTROLLER_PRINCIPAL = "controller"  # its KRaft controller client (PLAIN, loopback)

LOG4J = """\
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


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600, also if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    path.chmod(0o600)


def base_properties(controller_port: int, storage: Path) -> dict[str, str]:
    """Single-node KRaft settings that do not depend on security."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(storage),
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


def plaintext_listeners(listen: str, host: str, port: int, controller_port: int) -> dict[str, str]:
    """The throwaway broker: PLAINTEXT, no authorizer, topics auto-created."""
    return {
        "listeners": f"PLAINTEXT://{listen}:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "auto.create.topics.enable": "true",
    }


def secure_listeners(
    listen: str,
    host: str,
    port: int,
    controller_port: int,
    keystore: Path,
    ca: Path,
    broker: KafkaIdentity,
) -> dict[str, str]:
    """One SASL_SSL listener (SCRAM-SHA-512; ``keystore``: PEM key and chain), the
    StandardAuthorizer with no ACL = deny, no auto-creation, a loopback PLAIN controller."""
    # SCRAM cannot work on the controller listener; its one user is the broker's own
    # controller client, re-keyed at every start.
    secret = secrets.token_urlsafe(24)
    plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
             f'username="{CONTROLLER_PRINCIPAL}" password="{secret}" '
             f'user_{CONTROLLER_PRINCIPAL}="{secret}";')  # fmt: skip
    scram = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
             f'username="{broker.principal}" password="{broker.password}";')  # fmt: skip
    return {
        "listeners": f"SASL_SSL://{listen}:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
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
        "ssl.truststore.location": str(ca),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN};User:{BROKER_PRINCIPAL};User:{CONTROLLER_PRINCIPAL}",
        "auto.create.topics.enable": "false",
    }


def write_properties(path: Path, props: Mapping[str, str]) -> None:
    """``server.properties`` (0600: it holds the broker's own passwords)."""
    write_private(path, "".join(f"{k}={v}\n" for k, v in props.items()).encode())


def write_format_args(
    path: Path, properties: Path, cluster_id: str, users: Mapping[str, KafkaIdentity]
) -> Path:
    """The arguments of ``kafka-storage format`` as an argument file (0600), one per line:
    the tool reads ``@<file>`` (argparse4j's file prefix), so the initial SCRAM passwords
    (KIP-900 ``--add-scram``) never appear on a command line (``ps``)."""
    args = [
        f"--config={properties}",
        # "--cluster-id=ID": a random id may start with "-", which argparse would take for
        # an option after a separate "-t" (it failed 1 in 64 fresh starts)
        f"--cluster-id={cluster_id}",
        "--ignore-formatted",
    ]
    for name, ident in users.items():
        if any(c in ident.password for c in ",]\n"):  # Kafka's [name=...,password=...] syntax
            raise ValueError(f"the password of {name} cannot be passed to kafka-storage")
        args.append(f"--add-scram={SCRAM}=[name={name},password={ident.password}]")
    write_private(path, ("\n".join(args) + "\n").encode())
    return path
