"""Who a Kafka client is, and the one place that turns that into client settings.

A principal's credentials live in a *client config file*: librdkafka properties
(``bootstrap.servers``, ``security.protocol``, ``sasl.*``, ``ssl.ca.location``), mode 0600,
usable as is by other tools (``kcat -F <file>``). :func:`client_config` builds the
confluent-kafka config and :func:`faust_settings` the Faust/aiokafka settings from the same
:class:`KafkaIdentity`, so every client of fedstream authenticates the same way.

The process's identity is chosen once at the edge (the CLI from ``--principal`` /
``--kafka-config``, a ClientApp from its node config, the ServerApp from its run config,
the test session) with :func:`use`; factories take it unless a caller passes another one
(the ACL proof tests act as several principals in one process).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.kafka.reach import quiet_config

__all__ = [
    "NO_NAGLE",
    "PLAINTEXT",
    "SCRAM",
    "KafkaIdentity",
    "acting_as",
    "client_config",
    "current",
    "faust_settings",
    "read_client_config",
    "sibling",
    "use",
    "write_client_config",
]

logger = logging.getLogger(__name__)

SCRAM = "SCRAM-SHA-512"
# Nagle's algorithm holds a small TLS record until the previous one is acknowledged: a chat
# reply then waits for the peer's delayed ACK (tens of ms). librdkafka >= 2.3 disables it by
# default; older ones (Debian's kcat) do not, so every client and client config file says so.
NO_NAGLE = {"socket.nagle.disable": "true"}


@dataclass(frozen=True)
class KafkaIdentity:
    """One principal's way in: protocol, SCRAM credentials, the CA that signs the broker.

    ``path`` is the client config file it was read from (None when built in memory); the
    other principals of the same cluster have their files beside it (:func:`sibling`).
    """

    principal: str = ""
    protocol: str = "PLAINTEXT"
    password: str = ""
    ca: Path | None = None
    mechanism: str = SCRAM
    bootstrap: str = ""
    path: Path | None = None

    @property
    def secure(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def confluent(self) -> dict[str, Any]:
        """The librdkafka settings of this identity (empty for plaintext)."""
        if not self.secure:
            return {}
        out: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            out.update(
                {
                    "sasl.mechanism": self.mechanism,
                    "sasl.username": self.principal,
                    "sasl.password": self.password,
                }
            )
        if self.ca is not None:
            out["ssl.ca.location"] = str(self.ca)
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.protocol:
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        return context

    def __repr__(self) -> str:  # never print the password
        return f"KafkaIdentity({self.principal or 'anonymous'!r}, {self.protocol})"


PLAINTEXT = KafkaIdentity()
_current: KafkaIdentity = PLAINTEXT


def use(identity: KafkaIdentity) -> None:
    """Make ``identity`` the one this process's Kafka clients use by default."""
    global _current
    _current = identity
    logger.debug("kafka clients act as %r", identity)


def current() -> KafkaIdentity:
    return _current


@contextmanager
def acting_as(identity: KafkaIdentity) -> Iterator[KafkaIdentity]:
    """Clients created inside the block act as ``identity`` (tests acting as several
    principals in one process); the process's own identity is restored after it."""
    before = _current
    use(identity)
    try:
        yield identity
    finally:
        use(before)


def client_config(
    bootstrap: str, identity: KafkaIdentity | None = None, **overrides: Any
) -> dict[str, Any]:
    """The confluent-kafka config of a client of ``bootstrap`` acting as ``identity``."""
    ident = identity or _current
    return {
        "bootstrap.servers": bootstrap,
        **ident.confluent(),
        **NO_NAGLE,
        **quiet_config(),
        **overrides,
    }


def faust_settings(identity: KafkaIdentity | None = None) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for ``identity`` (aiokafka underneath)."""
    ident = identity or _current
    if not ident.secure:
        return {}
    import faust

    credentials = faust.SASLCredentials(
        username=ident.principal,
        password=ident.password,
        ssl_context=ident.ssl_context(),
        mechanism=ident.mechanism,
    )
    return {"broker_credentials": credentials}


def sibling(principal: str, identity: KafkaIdentity | None = None) -> Path | None:
    """The client config file of ``principal`` beside ``identity``'s own (None if absent)."""
    ident = identity or _current
    if ident.path is None:
        return None
    path = ident.path.parent / f"{principal}.conf"
    return path if path.exists() else None


def _escape(value: str) -> str:
    if "\n" in value:
        raise ValueError("client config values cannot contain newlines")
    return value


def write_client_config(path: Path, identity: KafkaIdentity) -> KafkaIdentity:
    """Write ``identity`` as a librdkafka properties file (mode 0600); returns it with ``path``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [
        f"# fedstream Kafka client config of principal {identity.principal} (keep private)",
        f"bootstrap.servers={_escape(identity.bootstrap)}",
        *(f"{k}={_escape(str(v))}" for k, v in identity.confluent().items()),
        *(f"{k}={v}" for k, v in NO_NAGLE.items()),
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)
    tmp.chmod(0o600)
    tmp.replace(path)
    return replace(identity, path=path)


def read_client_config(path: Path) -> KafkaIdentity:
    """Read a client config file written by :func:`write_client_config` (or by hand).

    Raises
    ------
    ValueError
        When the file is missing, unreadable, or names an unsupported protocol.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read Kafka client config {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; it holds a password (chmod 600 it)", path)
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in {"PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"}:
        raise ValueError(f"{path}: unsupported security.protocol {protocol!r}")
    ca = props.get("ssl.ca.location")
    return KafkaIdentity(
        principal=props.get("sasl.username", ""),
        protocol=protocol,
        password=props.get("sasl.password", ""),
        ca=Path(ca) if ca else None,
        mechanism=props.get("sasl.mechanism", SCRAM).upper(),
        bootstrap=props.get("bootstrap.servers", ""),
        path=path,
    )
