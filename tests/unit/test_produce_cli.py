"""The `produce` command group: help texts and flag wiring (the sender is faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from app.produce import cli
from app.produce.cli import produce_app
from tests.shared_data import find_shared_uci_csv, shared_dirs

runner = CliRunner()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the Kafka sending with a recorder."""
    calls: list[dict[str, Any]] = []

    def fake_send(settings: Any, events: Any, title: str, rate: Any, progress: bool, **kw: Any):
        calls.append({"settings": settings, "events": list(events), "rate": rate, **kw})

    monkeypatch.setattr(cli, "_send", fake_send)
    return calls


@pytest.mark.parametrize("command", ["synthetic", "csv", "uci"])
def test_every_option_has_help(command: str) -> None:
    # Prepare
    group = typer.main.get_command(produce_app)
    ctx = click.Context(group)
    sub = group.get_command(ctx, command)  # type: ignore[attr-defined]
    # Execute
    result = runner.invoke(produce_app, [command, "--help"])
    # Assert
    assert result.exit_code == 0
    assert sub.help
    undocumented = [p.name for p in sub.params if not getattr(p, "help", None)]
    assert undocumented == []


def test_synthetic_wires_flags(sent: list[dict[str, Any]]) -> None:
    result = runner.invoke(
        produce_app,
        ["synthetic", "--customers", "5", "--silos", "2", "--events", "50", "--invalid", "3",
         "--rate", "100", "--bootstrap", "h:1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = sent
    assert call["settings"].bootstrap == "h:1" and call["settings"].silos == 2
    assert call["rate"] == 100
    assert len(call["events"]) == 53
    assert sum(isinstance(e[2], bytes) for e in call["events"]) == 3


def test_csv_reports_a_missing_column_in_one_line(
    tmp_path: Path, sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("ts,customer_id\n1,a\n")
    ok = runner.invoke(produce_app, ["csv", str(path), "--speedup", "5"])
    assert ok.exit_code == 0, ok.output
    assert sent[0]["speedup"] == 5
    assert [e[0] for e in sent[0]["events"]] == ["customer", "transaction"]
    bad = runner.invoke(produce_app, ["csv", str(path), "--time-col", "when"])
    assert bad.exit_code == 1
    assert "time column 'when' not found" in bad.output


def test_uci_with_limit(sent: list[dict[str, Any]]) -> None:
    csv_path = find_shared_uci_csv()
    assert csv_path is not None, f"UCI_Credit_Card.csv is missing from {shared_dirs()}"
    args = ["uci", "--file", str(csv_path), "--limit", "3", "--silos", "4"]
    result = runner.invoke(produce_app, args)
    assert result.exit_code == 0, result.output
    assert len(sent[0]["events"]) == 21
    assert sent[0]["total"] == 21


def test_summary_table_after_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a producer that accepts everything
    from app.kafka import clients

    class Sink:
        def produce(self, topic: str, value: bytes, key: str, on_delivery: Any) -> None:
            on_delivery(None, None)

        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            return 0

    monkeypatch.setattr(clients, "make_producer", lambda bootstrap, **kw: Sink())
    from app import cli_support

    monkeypatch.setattr(cli_support, "require_broker", lambda settings, timeout_s=None: None)
    # Execute
    result = runner.invoke(produce_app, ["synthetic", "--customers", "3", "--events", "40"])
    # Assert
    assert result.exit_code == 0, result.output
    assert "transaction events" in result.output
    assert "events/s" in result.output
