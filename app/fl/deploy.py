"""Flower's files for a deployment whose processes run elsewhere (``docker/compose.yaml``).

``fedstream fl configure --superlink-host H`` writes, under ``<data-dir>`` (the same layout
``fl up`` uses locally, and the same CA as the Kafka broker's certificate when run on the
data dir of ``fedstream kafka configure``)::

    pki/superlink/server.pem, server.key       TLS for H, 127.0.0.1 and localhost
    pki/supernodes/silo-<id>/node.key, node.pub one key pair per SuperNode
    fl/flwr-home/config.toml                   the Flower CLI's connection ``fedstream``
                                               to H:<port>, trusting the CA (no insecure)
    fl/run-config.toml                         the run's Kafka: bootstrap and fl-server's
                                               client config

``fedstream fl register`` then registers every SuperNode's public key with the running
SuperLink (``flwr supernode register``); a key it already knows (``--database`` keeps
registrations across SuperLink restarts) counts as registered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from app.fl.flower_auth import (
    FlowerSecurity,
    RegistrationError,
    connection_entry,
    register_supernodes,
    supernode_name,
)
from app.fl.pki import NodeKeys, ensure_node_keys, ensure_server_tls, pki_dir
from app.kafka.principals import FL_SERVER

__all__ = ["CONNECTION", "FlowerFiles", "configure", "flwr_home", "register"]

logger = logging.getLogger(__name__)

CONNECTION = "fedstream"  # the connection name `fl up` uses too (app.fl.processes)


def flwr_home(data_dir: Path) -> Path:
    """``FLWR_HOME`` of the Flower CLI calls (``flwr run``, ``flwr supernode register``)."""
    return Path(data_dir) / "fl" / "flwr-home"


@dataclass(frozen=True)
class FlowerFiles:
    """What :func:`configure` wrote."""

    security: FlowerSecurity
    nodes: dict[int, NodeKeys]
    connection: Path
    run_config: Path


def configure(
    data_dir: Path,
    superlink_host: str,
    port: int,
    silo_ids: Sequence[int],
    bootstrap: str,
    kafka_clients: Path | None = None,
) -> FlowerFiles:
    """Write the SuperLink's certificate, the SuperNodes' key pairs, the CLI connection and
    the run config (see the module docstring); existing keys and certificates are kept."""
    data_dir = Path(data_dir)
    hosts = tuple(dict.fromkeys((superlink_host, "127.0.0.1", "localhost")))
    security = FlowerSecurity(ensure_server_tls(data_dir, hosts))
    nodes = {s: ensure_node_keys(data_dir, supernode_name(s)) for s in silo_ids}
    home = flwr_home(data_dir)
    home.mkdir(parents=True, exist_ok=True)
    connection = home / "config.toml"
    entry = connection_entry(f"{superlink_host}:{port}", security)
    connection.write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: entry}}))
    server_conf = kafka_clients / f"{FL_SERVER}.conf" if kafka_clients else None
    run_config = data_dir / "fl" / "run-config.toml"
    run_config.write_text(tomli_w.dumps({
        "bootstrap": bootstrap,
        "kafka-config": str(server_conf) if server_conf and server_conf.exists() else "",
    }))  # fmt: skip
    logger.info("Flower files for SuperLink %s:%d and %d SuperNodes in %s", superlink_host,
                port, len(nodes), data_dir)  # fmt: skip
    return FlowerFiles(security, nodes, connection, run_config)


def register(data_dir: Path, silo_ids: Sequence[int]) -> dict[str, int]:
    """Register every silo's SuperNode public key with the SuperLink of the connection
    :func:`configure` wrote; returns the node ids of the newly registered ones."""
    import os

    data_dir = Path(data_dir)
    keys = {supernode_name(s): pki_dir(data_dir) / "supernodes" / supernode_name(s) / "node.pub"
            for s in silo_ids}  # fmt: skip
    missing = [str(k) for k in keys.values() if not k.exists()]
    if missing:
        raise RegistrationError(f"no public key {', '.join(missing)}; run `fl configure` first")
    env = {**os.environ, "FLWR_HOME": str(flwr_home(data_dir)), "FLWR_TELEMETRY_ENABLED": "0"}
    flwr = Path(sys.executable).parent / "flwr"
    return register_supernodes(flwr, CONNECTION, keys, env, existing_ok=True)
