"""Helpers shared by the CLI modules (below them, so no import circle through app/cli.py).

Errors are ONE line on stderr, never wrapped: a script or an operator at 3 a.m. reads the
cause at once, whatever the terminal width.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from app.settings import Settings

__all__ = ["error_console", "fail", "is_terminal", "print_table", "require_broker"]

logger = logging.getLogger(__name__)

error_console = Console(stderr=True, soft_wrap=True)


def is_terminal() -> bool:
    """Whether stdout is a terminal (else: plain, complete, machine-readable output)."""
    return sys.stdout.isatty()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; raise the returned Exit."""
    error_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}")
    return typer.Exit(code=code)


def require_broker(settings: Settings, timeout_s: float | None = None) -> None:
    """Exit with one line unless the broker answers within the connect timeout.

    ``timeout_s`` (a command's own ``--timeout``) bounds the wait further when given.
    """
    from app.kafka.reach import BrokerUnreachable, check_broker

    limit = (
        settings.connect_timeout_s
        if timeout_s is None
        else min(timeout_s, settings.connect_timeout_s)
    )
    try:
        check_broker(settings.bootstrap, limit)
    except BrokerUnreachable as exc:
        raise fail(str(exc)) from None


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    json_output: bool = False,
    styles: Mapping[str, str] | None = None,
) -> None:
    """A table on stdout that never cuts a name or a value.

    On a terminal: a Rich table whose cells wrap instead of being cut (``styles`` maps a
    cell's text to a Rich style). Piped, in CI, or with ``json_output``: complete lines a
    script can read: tab-separated with a header line, or one JSON object per row.
    """
    if json_output:
        for row in rows:
            typer.echo(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode())
        return
    if not is_terminal():
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(" ".join(str(cell).split()) for cell in row))
        return
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [escape(str(cell)) for cell in row]
        table.add_row(*(f"[{styles[c]}]{c}[/]" if styles and c in styles else c for c in cells))
    Console().print(table)
