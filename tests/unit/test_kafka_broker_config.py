"""The local broker's files (app.kafka.broker_config), written without starting a broker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.kafka.broker import LocalBroker
from app.kafka.security import read_client_config


def test_configure_writes_private_files_and_an_argument_file_for_kafka_storage(
    tmp_path: Path,
) -> None:
    # Prepare
    broker = LocalBroker(tmp_path, tmp_path / "cache", port=19092, controller_port=19093,
                         principals=["worker", "silo-0"], host="kafka")  # fmt: skip

    # Execute
    args_file = broker.configure()

    # Assert: one argument per line, every user's SCRAM credential, the config it formats
    assert args_file == broker.home / "format.args"
    assert args_file.stat().st_mode & 0o777 == 0o600
    assert broker.properties.stat().st_mode & 0o777 == 0o600
    lines = args_file.read_text().splitlines()
    assert lines[0] == f"--config={broker.properties}"
    assert lines[1].startswith("--cluster-id=") and lines[2] == "--ignore-formatted"
    for name in ("admin", "worker", "silo-0"):
        password = read_client_config(broker.clients_dir / f"{name}.conf").password
        assert f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]" in lines
    assert any(line.startswith("--add-scram=SCRAM-SHA-512=[name=broker,") for line in lines)
    props = dict(
        line.split("=", 1) for line in broker.properties.read_text().splitlines() if "=" in line
    )
    assert props["advertised.listeners"] == "SASL_SSL://kafka:19092"
    assert props["listeners"].startswith("SASL_SSL://0.0.0.0:19092,")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert props["ssl.truststore.location"] == str(tmp_path / "pki" / "ca" / "ca.pem")


def test_formatting_passes_the_passwords_in_a_file_removed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: record the command the broker runs to format its storage (no Java here)
    broker = LocalBroker(tmp_path, tmp_path / "cache", port=19092, controller_port=19093)
    broker._write_config()
    seen: dict[str, object] = {}

    def run(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        arg_file = Path(cmd[-1].removeprefix("@"))
        seen.update(cmd=cmd, text=arg_file.read_text(), mode=arg_file.stat().st_mode & 0o777)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr("app.kafka.broker.subprocess.run", run)

    # Execute
    broker._format_storage()

    # Assert: the passwords were in the 0600 file, not on the command line; the file is gone
    password = read_client_config(broker.clients_dir / "admin.conf").password
    cmd = seen["cmd"]
    assert isinstance(cmd, list) and cmd[-2:] == ["format", f"@{broker.home / '.format.args'}"]
    assert not any(password in part for part in cmd)
    assert password in str(seen["text"]) and seen["mode"] == 0o600
    assert not (broker.home / ".format.args").exists()
