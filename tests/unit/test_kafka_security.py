"""Client configs, the principals' grants and how a command finds its principal (no broker)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.kafka.principals import (
    BANK,
    WORKER,
    ensure_credentials,
    fl_grants,
    stream_grants,
    tenant_principal,
)
from app.kafka.security import (
    NO_NAGLE,
    PLAINTEXT,
    KafkaIdentity,
    acting_as,
    client_config,
    current,
    read_client_config,
    sibling,
    write_client_config,
)
from app.settings import Settings


def test_client_config_round_trip_is_private_and_librdkafka_shaped(tmp_path: Path) -> None:
    # Prepare
    ident = KafkaIdentity("silo-1", "SASL_SSL", "s3cret", tmp_path / "ca.pem", bootstrap="h:1")

    # Execute
    written = write_client_config(tmp_path / "c" / "silo-1.conf", ident)
    back = read_client_config(written.path)  # type: ignore[arg-type]

    # Assert
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o600  # type: ignore[union-attr]
    assert back == written
    assert client_config("b:9", back)["sasl.password"] == "s3cret"
    assert client_config("b:9", back)["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert "s3cret" not in repr(back)
    assert "security.protocol" not in client_config("b:9", PLAINTEXT)


def test_every_client_and_client_config_file_turns_nagle_off(tmp_path: Path) -> None:
    # Prepare: a chat reply is one small TLS record; with Nagle on it waits for a delayed ACK
    ident = KafkaIdentity("silo-1", "SASL_SSL", "s3cret", tmp_path / "ca.pem", bootstrap="h:1")

    # Execute
    written = write_client_config(tmp_path / "silo-1.conf", ident)
    lines = written.path.read_text().splitlines()  # type: ignore[union-attr]

    # Assert: in the file (kcat -F, other librdkafka tools) and in our own clients
    assert NO_NAGLE == {"socket.nagle.disable": "true"}
    assert "socket.nagle.disable=true" in lines
    assert client_config("b:9", ident)["socket.nagle.disable"] == "true"
    assert client_config("b:9", PLAINTEXT)["socket.nagle.disable"] == "true"
    assert (
        client_config("b:9", ident, **{"socket.nagle.disable": "false"})["socket.nagle.disable"]
        == "false"
    )


def test_credentials_keep_passwords_and_siblings_are_found(tmp_path: Path) -> None:
    # Prepare
    first = ensure_credentials(tmp_path, ["admin", "silo-0"], "h:1", tmp_path / "ca.pem")

    before = current()  # the session's own identity (the integration broker's admin in CI)

    # Execute
    again = ensure_credentials(tmp_path, ["admin", "silo-0", "silo-1"], "h:1", tmp_path / "ca.pem")

    # Assert
    assert again["silo-0"].password == first["silo-0"].password
    assert len(again["silo-1"].password) >= 32
    assert again["silo-1"].password != again["silo-0"].password
    with acting_as(again["admin"]):
        assert sibling("silo-1") == tmp_path / "silo-1.conf"
        assert sibling("silo-9") is None
        assert current() is again["admin"]
    assert current() is before


def test_silo_grants_do_not_reach_other_silos() -> None:
    # Execute
    grants = fl_grants([1, 10], {1: "g1", 10: "g10"})

    # Assert: prefix "silo.1." does not match "silo.10.batches"; groups are literal
    silo1 = [g for g in grants if g.principal == "silo-1"]
    topics = {g.name for g in silo1 if g.resource == "TOPIC"}
    assert topics == {"silo.1."}
    assert not "silo.10.batches".startswith("silo.1.")
    assert {(g.name, g.prefixed) for g in silo1 if g.resource == "GROUP"} == {("g1", False)}
    assert {g.operation for g in silo1} == {"READ", "DESCRIBE"}


def test_stream_grants_are_namespaced_and_least_privilege() -> None:
    # Execute
    grants = stream_grants("ns", [0], ["operator", "silo-0"])

    # Assert
    bank = {(g.name, g.operation) for g in grants if g.principal == BANK}
    assert bank == {(t, op) for t in ("ns.bank.customers", "ns.bank.transactions")
                    for op in ("WRITE", "DESCRIBE")}  # fmt: skip
    worker_reads = {g.name for g in grants if g.principal == WORKER and g.operation == "READ"}
    assert not any(name.startswith("ns.silo.") for name in worker_reads)
    tenant = {(g.name, g.operation) for g in grants if g.principal == tenant_principal("silo-0")
              and g.resource == "TOPIC"}  # fmt: skip
    assert ("ns.chatbot.silo-0.requests", "WRITE") in tenant
    assert ("ns.chatbot.silo-0.responses", "READ") in tenant
    assert not any("operator" in name for name, _ in tenant)
    assert all(g.name.startswith(("ns.", "ns-", "fedstream-")) for g in grants)


def test_settings_choose_the_command_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare (the integration session points FEDSTREAM_KAFKA_CLIENTS at its broker)
    for name in ("CLIENTS", "PRINCIPAL", "CONFIG"):
        monkeypatch.delenv(f"FEDSTREAM_KAFKA_{name}", raising=False)
    clients = tmp_path / "kafka" / "clients"
    ensure_credentials(clients, ["admin", "worker"], "h:1", tmp_path / "ca.pem")
    settings = Settings(data_dir=tmp_path)

    # Execute + Assert
    assert settings.kafka_identity().principal == "admin"
    assert settings.kafka_identity("worker").principal == "worker"
    assert Settings(data_dir=tmp_path, kafka_principal="worker").kafka_identity().principal == (
        "worker"
    )
    with pytest.raises(ValueError, match="no Kafka credentials for principal 'bank'"):
        settings.kafka_identity("bank")  # a secure deployment: never fall back to plaintext
    assert Settings(data_dir=tmp_path / "elsewhere").kafka_identity() == PLAINTEXT
    other = Settings(data_dir=tmp_path / "x", kafka_config=clients / "worker.conf")
    assert other.kafka_identity().principal == "worker"
