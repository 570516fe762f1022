"""docker/compose.yaml against what fedstream and the tools really write and accept.

There is no Docker engine on the development machines, so the compose file is never run
here. What can be checked without one is checked: the `setup` service's own commands are
run (on a temporary directory standing for the `secrets` volume) and every file any
service names under that volume must then exist; every flag given to the SuperLink and
the SuperNodes is one their `--help` lists, and the TLS/authentication flags are exactly
those `fl up` uses; every fedstream command line parses; the SuperNodes' per-node Kafka
setting resolves to the broker's host; nothing runs --insecure; every service says what
happens when it dies, and every service others wait for as healthy has a health check.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import _register_optional, app
from app.fl.client_app import NodeSettings
from app.fl.flower_auth import FlowerSecurity
from app.fl.pki import NodeKeys, ServerTLS
from app.kafka.security import read_client_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SECRETS = "/var/lib/fedstream-secrets"
IMAGE_ROOT = "/opt/fedstream"  # WORKDIR of docker/Dockerfile, which copies app/ there
BIN = Path(sys.executable).parent

runner = CliRunner()
_register_optional()


def _services() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, dict[str, Any]] = doc["services"]
    return services


def _argv(service: dict[str, Any]) -> list[str]:
    def as_list(value: Any) -> list[str]:
        return [] if value is None else [value] if isinstance(value, str) else list(value)

    return as_list(service.get("entrypoint")) + as_list(service.get("command"))


def _fedstream_services() -> dict[str, dict[str, Any]]:
    """Services of the fedstream image that run its `fedstream` entrypoint."""
    return {n: s for n, s in _services().items()
            if s.get("image") == "fedstream:latest" and "entrypoint" not in s}  # fmt: skip


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `secrets` volume after the `setup` service's commands ran (same env)."""
    volume = tmp_path_factory.mktemp("secrets")
    setup = _services()["setup"]
    env = {**setup["environment"], "FEDSTREAM_DATA_DIR": str(volume)}
    (script,) = setup["command"]
    for part in script.split("&&"):
        argv = shlex.split(part)
        assert argv[0] == "fedstream", part
        result = runner.invoke(app, argv[1:], env=env)
        assert result.exit_code == 0, result.output
    return volume


def test_nothing_runs_insecure() -> None:
    for name, service in _services().items():
        assert "--insecure" not in _argv(service), name


def test_every_file_named_under_the_secrets_volume_is_one_setup_writes(secrets: Path) -> None:
    # Prepare: every path under the volume any service names (arguments, health checks)
    named: set[str] = set()
    for service in _services().values():
        text = " ".join([*_argv(service), str(service.get("healthcheck", ""))])
        named |= set(re.findall(rf"{SECRETS}/[\w./-]+", text))
    named |= {v for s in _services().values() for v in (s.get("environment") or {}).values()
              if isinstance(v, str) and v.startswith(f"{SECRETS}/")}  # fmt: skip

    # Assert
    assert len(named) >= 12, named
    for path in sorted(named):
        assert (secrets / path.removeprefix(f"{SECRETS}/")).exists(), path


def test_kafka_formats_from_the_argument_file_and_starts_secure(secrets: Path) -> None:
    # Prepare
    (script,) = _services()["kafka"]["entrypoint"][2:]
    args_file = secrets / "kafka" / "format.args"
    lines = args_file.read_text().splitlines()
    props = dict(line.split("=", 1) for line in
                 (secrets / "kafka" / "server.properties").read_text().splitlines())  # fmt: skip

    # Assert: the passwords come from the 0600 file, never the command line
    assert f"kafka-storage.sh format @{SECRETS}/kafka/format.args" in script
    assert "password" not in script and "--add-scram" not in script
    assert args_file.stat().st_mode & 0o777 == 0o600
    assert lines[0] == f"--config={secrets / 'kafka' / 'server.properties'}"
    assert sum(line.startswith("--add-scram=SCRAM-SHA-512=") for line in lines) >= 8
    assert f"kafka-server-start.sh {SECRETS}/kafka/server.properties" in script
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9092"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert props["ssl.truststore.location"] == str(secrets / "pki" / "ca" / "ca.pem")


def _flags(help_cmd: list[str]) -> set[str]:
    out = subprocess.run(help_cmd, capture_output=True, text=True, timeout=120, check=False)
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", out.stdout + out.stderr))


def _in_volume(args: list[str], secrets: Path) -> list[str]:
    return [a.replace(str(secrets), SECRETS) for a in args]


def test_flower_runs_tls_with_supernode_auth_as_fl_up_does(secrets: Path) -> None:
    # Prepare: the flags `fl up` gives (app.fl.flower_auth), on the volume's paths
    pki = secrets / "pki"
    security = FlowerSecurity(ServerTLS(pki / "ca" / "ca.pem", pki / "superlink" / "server.pem",
                                        pki / "superlink" / "server.key"))  # fmt: skip
    services = _services()
    superlink = services["superlink"]["entrypoint"]

    # Assert: the SuperLink's flags exist and include fl up's, in order
    assert set(a for a in superlink if a.startswith("--")) <= _flags(
        [str(BIN / "flower-superlink"), "--help"]
    )
    want = " ".join(_in_volume(security.superlink_args(), secrets))
    assert want in " ".join(superlink)
    node_flags = _flags([sys.executable, "-m", "app.fl.supernode", "--help"])
    for silo in range(3):
        argv = _argv(services[f"supernode-{silo}"])
        node = pki / "supernodes" / f"silo-{silo}"
        keys = NodeKeys(node / "node.key", node / "node.pub")
        assert argv[:3] == ["python", "-m", "app.fl.supernode"]
        assert set(a for a in argv if a.startswith("--")) <= node_flags
        for flag, value in zip(*[iter(_in_volume(security.supernode_args(keys), secrets))] * 2,
                               strict=True):  # fmt: skip
            assert argv[argv.index(flag) + 1] == value
    # the CLI connection trusts the CA and names the SuperLink's host
    conn = tomllib.loads((secrets / "fl" / "flwr-home" / "config.toml").read_text())
    entry = conn["superlink"]["fedstream"]
    assert entry == {"address": "superlink:9500", "root-certificates": str(pki / "ca" / "ca.pem")}
    run = services["fl-run"]["entrypoint"]
    assert run[:4] == ["flwr", "run", f"{IMAGE_ROOT}/app/fl/flwr_app", "fedstream"]
    assert (ROOT / run[2].removeprefix(f"{IMAGE_ROOT}/")).is_dir()
    assert "--run-config" in _flags([str(BIN / "flwr"), "run", "--help"])


def test_each_supernode_finds_its_kafka_from_its_own_node_config(secrets: Path) -> None:
    for silo in range(3):
        argv = _argv(_services()[f"supernode-{silo}"])
        node_config = argv[argv.index("--node-config") + 1].replace(SECRETS, str(secrets))
        pairs = dict(kv.split("=", 1) for kv in shlex.split(node_config))

        node = NodeSettings.from_node_config(pairs, "fraud")

        ident = read_client_config(Path(node.kafka_config))
        assert node.silo_id == silo and node.bootstrap == "kafka:9092"
        assert ident.principal == f"silo-{silo}" and ident.ca == secrets / "pki" / "ca" / "ca.pem"
    run_config = tomllib.loads((secrets / "fl" / "run-config.toml").read_text())
    assert run_config["bootstrap"] == "kafka:9092"
    assert read_client_config(Path(run_config["kafka-config"])).principal == "fl-server"


def test_every_fedstream_command_line_parses() -> None:
    commands = {n: s["command"] for n, s in _fedstream_services().items()}
    assert {"topics", "worker", "fl-register", "synthetic-bank", "exporter"} <= set(commands)
    for name, command in commands.items():
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (name, result.output)


ONE_SHOT = {"setup", "topics", "fl-register", "fl-run"}
"""Services that run to completion (others wait for them to complete, or nothing does)."""


def _waited_for(services: dict[str, dict[str, Any]], condition: str) -> set[str]:
    """Services some other service waits for with ``condition``."""
    out = set()
    for service in services.values():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):  # the short form: started, not waited for
            continue
        for dep, cond in deps.items():
            if isinstance(cond, dict) and cond.get("condition") == condition:
                out.add(dep)
    return out


def test_every_long_running_service_is_restarted_and_one_shots_are_not() -> None:
    services = _services()
    for name, service in services.items():
        policy = service.get("restart")
        if name in ONE_SHOT:
            assert policy in ("no", "on-failure"), f"{name}: {policy}"
        else:  # the broker too: format.args has --ignore-formatted, a restart keeps data
            assert policy == "unless-stopped", f"{name} is not restarted when it dies"
    assert _waited_for(services, "service_completed_successfully") <= ONE_SHOT


def test_services_waited_for_as_healthy_have_health_checks() -> None:
    services = _services()
    healthy = _waited_for(services, "service_healthy")
    assert {"kafka", "superlink", "supernode-0"} <= healthy
    for name in healthy | {"worker"}:
        assert "test" in services[name].get("healthcheck", {}), f"{name}: no health check"
    alive = " ".join(services["worker"]["healthcheck"]["test"])
    assert "/worker/0/alive" in alive  # touched by the worker's progress timer (event loop)


def test_health_checks_probe_where_each_service_listens(secrets: Path) -> None:
    # Prepare: each service's own address, from its configuration
    services = _services()
    check = {n: " ".join(services[n]["healthcheck"]["test"]) for n in services
             if "healthcheck" in services[n]}  # fmt: skip
    props = dict(line.split("=", 1) for line in
                 (secrets / "kafka" / "server.properties").read_text().splitlines())  # fmt: skip
    superlink = services["superlink"]["entrypoint"]
    worker = services["worker"]

    # Assert: the probe of each is the address it serves (tests/integration/test_compose_health
    # runs the checks against the real processes)
    assert "SASL_SSL://0.0.0.0:9092" in props["listeners"].split(",")
    assert "/dev/tcp/127.0.0.1/9092" in check["kafka"]
    assert superlink[superlink.index("--host") + 1] == "0.0.0.0"
    port = superlink[superlink.index("--port") + 1]
    assert f"https://127.0.0.1:{port}/health" in check["superlink"]
    for silo in range(3):  # each probes its own Runtime API port (where its runtime connects)
        argv = _argv(services[f"supernode-{silo}"])
        assert f"('127.0.0.1', {argv[argv.index('--port') + 1]})" in check[f"supernode-{silo}"]
    worker_id = worker["command"][worker["command"].index("--worker-id") + 1]
    data_dir = worker["environment"]["FEDSTREAM_DATA_DIR"]
    assert f"{data_dir}/worker/{worker_id}/alive" in check["worker"]
