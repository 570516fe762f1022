"""Flower with TLS and SuperNode authentication: flags, connection config, registration.

What ``fedstream fl up`` does with it (:mod:`app.fl.processes` calls these):

- the SuperLink serves HTTPS with a certificate of the federation's CA
  (:mod:`app.fl.pki`) and ``--enable-supernode-auth``: only SuperNodes whose public key
  was registered may join;
- every SuperNode has its own EC key pair; its public key is registered with
  ``flwr supernode register`` before the node starts, and it verifies the SuperLink's
  certificate against the CA (``--root-certificates``);
- the Flower CLI connection (``flwr run``/``stop``/``supernode``) names the CA as
  ``root-certificates`` instead of ``insecure = true``.

``insecure=True`` (``fl up --insecure``) gives the old plaintext, unauthenticated setup
for a throwaway local run and says so in the log.
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.fl.pki import NodeKeys, ServerTLS, ensure_node_keys, ensure_server_tls

__all__ = [
    "FlowerSecurity",
    "RegistrationError",
    "connection_entry",
    "register_supernodes",
    "supernode_name",
]

logger = logging.getLogger(__name__)


class RegistrationError(RuntimeError):
    """``flwr supernode register`` failed."""


def supernode_name(silo: int) -> str:
    """The name of a silo's SuperNode (its key pair directory and registration name)."""
    return f"silo-{silo}"


@dataclass(frozen=True)
class FlowerSecurity:
    """TLS and SuperNode auth of one local deployment (None fields when insecure)."""

    tls: ServerTLS | None

    @classmethod
    def create(cls, data_dir: Path, insecure: bool = False) -> FlowerSecurity:
        if insecure:
            logger.warning(
                "Flower runs INSECURE: plaintext HTTP and no SuperNode authentication; "
                "any local process can join as a SuperNode or stop runs. Throwaway runs only."
            )
            return cls(None)
        return cls(ensure_server_tls(data_dir))

    @property
    def insecure(self) -> bool:
        return self.tls is None

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    def superlink_args(self) -> list[str]:
        if self.tls is None:
            return ["--insecure"]
        return [
            "--ssl-ca-certfile", str(self.tls.ca),
            "--ssl-certfile", str(self.tls.cert),
            "--ssl-keyfile", str(self.tls.key),
            "--enable-supernode-auth",
        ]  # fmt: skip

    def supernode_args(self, keys: NodeKeys | None) -> list[str]:
        if self.tls is None or keys is None:
            return ["--insecure"]
        return ["--root-certificates", str(self.tls.ca),
                "--auth-supernode-private-key", str(keys.private)]  # fmt: skip

    def node_keys(self, data_dir: Path, silo: int) -> NodeKeys | None:
        return None if self.tls is None else ensure_node_keys(data_dir, supernode_name(silo))

    def ssl_context(self) -> ssl.SSLContext | None:
        """For our own HTTPS calls to the SuperLink (its health check)."""
        return None if self.tls is None else ssl.create_default_context(cafile=str(self.tls.ca))


def connection_entry(address: str, security: FlowerSecurity) -> dict[str, Any]:
    """One ``[superlink.<name>]`` entry of Flower's ``config.toml``."""
    if security.tls is None:
        return {"address": address, "insecure": True}
    return {"address": address, "root-certificates": str(security.tls.ca)}


def register_supernodes(
    flwr: Path,
    connection: str,
    public_keys: Mapping[str, Path],
    env: Mapping[str, str],
    existing_ok: bool = False,
) -> dict[str, int]:
    """``flwr supernode register`` every ``name -> public key`` (in parallel: each CLI
    call takes seconds); returns the node id of each name newly registered.

    ``existing_ok``: a key the SuperLink already knows (its ``--database`` kept it across
    a restart) counts as registered."""

    def start(name: str, key: Path) -> subprocess.Popen[str]:
        cmd = [str(flwr), "supernode", "register", str(key), connection, "--name", name]
        return subprocess.Popen(
            [*cmd, "--format", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
        )

    procs = {name: start(name, key) for name, key in public_keys.items()}
    ids, failed = {}, []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        try:
            doc = json.loads(out[out.index("{") :])
        except ValueError:
            doc = {}
        if existing_ok and "already in use" in str(doc.get("error") or err or out):
            logger.info("SuperNode %s was registered already", name)
        elif proc.returncode != 0 or not doc.get("success"):
            failed.append(f"{name}: {(doc.get('error') or err or out).strip()[-300:]}")
        else:
            ids[name] = int(doc["node-id"])
            logger.info("registered SuperNode %s as node %s", name, ids[name])
    if failed:
        raise RegistrationError(f"`flwr supernode register` failed for {'; '.join(failed)}")
    return ids
