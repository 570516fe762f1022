"""Flower authenticated, with REAL processes: TLS from the local CA and SuperNode auth.

``fl up`` (``processes.up``) with one silo: the SuperLink serves only HTTPS, the Flower
CLI connection trusts the CA (no ``insecure``), the registered SuperNode joins and trains,
telemetry is off. SuperNodes that are not registered (a fresh key pair), that bring no
key, or that speak plaintext cannot join.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.fl import processes
from app.fl.pki import ensure_node_keys
from app.ports import free_port
from tests.integration.fl_support import run_config, seed_silos, silo_ids, start_flower, wait_rounds

pytestmark = pytest.mark.integration

ROWS = 300
FLWR = Path(sys.executable).with_name("flwr")


def _online_nodes(data_dir: Path) -> list[str]:
    env = {**os.environ, "FLWR_HOME": str(data_dir / "fl" / "flwr-home")}
    proc = subprocess.run(
        [str(FLWR), "supernode", "list", processes.CONNECTION, "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    doc = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert doc.get("success"), proc.stdout + proc.stderr
    return [n["node-id"] for n in doc["nodes"] if n["status"] == "online"]


def _rogue_supernode(port: int, extra: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """A SuperNode that tries to join the SuperLink on ``port``; it must give up."""
    cmd = [sys.executable, "-m", "app.fl.supernode", "--isolation", "process",
           "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()),
           "--max-retries", "2", "--max-wait-time", "20", *extra]  # fmt: skip
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    log.write_text(proc.stdout + proc.stderr)
    return proc


def test_only_registered_supernodes_join_a_tls_superlink(
    kafka_bootstrap: str,
    unique: str,
    tmp_path_factory: pytest.TempPathFactory,
    deployment: Path,
) -> None:
    # Prepare: one silo with a round of data, Flower up with the defaults (secure)
    (silo,) = silo_ids(unique, 900, 40)
    spec, model = f"spec-{unique}", f"fl-auth-{unique}"
    seed_silos(kafka_bootstrap, [silo], spec, ROWS)
    dep = start_flower(deployment, kafka_bootstrap, [silo], run_config(spec, model,
                       max_rows_per_round=ROWS))  # fmt: skip
    port = dep.superlink_port
    pki = deployment / "pki"

    # Assert: the registered node trains; the CLI trusts the CA; keys are private; no telemetry
    wait_rounds(kafka_bootstrap, model, 1, timeout_s=120)
    assert dep.secure and len(_online_nodes(deployment)) == 1
    conn = tomllib.loads((deployment / "fl" / "flwr-home" / "config.toml").read_text())
    entry = conn["superlink"][processes.CONNECTION]
    assert "insecure" not in entry and entry["root-certificates"] == str(pki / "ca" / "ca.pem")
    for key in [pki / "ca" / "ca.key", pki / "superlink" / "server.key",
                pki / "supernodes" / f"silo-{silo}" / "node.key"]:  # fmt: skip
        assert key.stat().st_mode & 0o777 == 0o600, key
    for pid in (dep.superlink_pid, dep.supernodes[str(silo)]["pid"]):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"FLWR_TELEMETRY_ENABLED=0" in environ
    # plaintext HTTP is not served
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)

    # Execute: three SuperNodes that must not get in
    rogue_dir = tmp_path_factory.mktemp("rogue")
    unregistered = ensure_node_keys(rogue_dir, "rogue")  # a valid key pair nobody registered
    ca = str(pki / "ca" / "ca.pem")
    stranger = _rogue_supernode(port, ["--root-certificates", ca,
                                       "--auth-supernode-private-key", str(unregistered.private)],
                                rogue_dir / "unregistered.log")  # fmt: skip
    keyless = _rogue_supernode(port, ["--root-certificates", ca], rogue_dir / "keyless.log")
    plaintext = _rogue_supernode(port, ["--insecure"], rogue_dir / "plaintext.log")

    # Assert: each one exits with an error, the federation still has one node
    said = {name: proc.stdout + proc.stderr for name, proc in
            (("stranger", stranger), ("keyless", keyless), ("plaintext", plaintext))}  # fmt: skip
    assert stranger.returncode != 0 and "Failed to activate SuperNode" in said["stranger"]
    assert keyless.returncode != 0 and "must be registered" in said["keyless"]
    assert plaintext.returncode != 0 and "connection to the SuperLink" in said["plaintext"]
    superlink_log = (deployment / "fl" / "logs" / "superlink.log").read_text()
    assert "No SuperNode found with the given public key" in superlink_log
    time.sleep(1.0)
    assert len(_online_nodes(deployment)) == 1
