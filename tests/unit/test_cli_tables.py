"""List output without a terminal: complete, machine-readable lines (no cut names)."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from app.cli import _register_optional, app
from topics import catalogue

runner = CliRunner()
_register_optional()


def test_topics_list_piped_prints_complete_tab_separated_lines() -> None:
    # Execute: CliRunner's stdout is not a terminal, like a pipe or CI
    result = runner.invoke(app, ["--silos", "2", "topics", "list", "--offline"])

    # Assert: a header, then one line per topic with its whole name
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["topic", "partitions", "configs", "key", "value", "on broker"]
    names = [line.split("\t")[0] for line in lines[1:]]
    assert names == [spec.name for spec in catalogue([0, 1])]
    assert "dlq.bank.transactions" in names and not any("…" in line for line in lines)


def test_topics_list_json_lines() -> None:
    result = runner.invoke(app, ["--silos", "1", "topics", "list", "--offline", "--json"])
    docs = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert [d["topic"] for d in docs] == [spec.name for spec in catalogue([0])]
    assert docs[0]["partitions"] == 4 and docs[0]["on broker"] == "-"
