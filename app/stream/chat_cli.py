"""`fedstream ask CUSTOMER_ID`: ask the stream workers about a customer over Kafka."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
import typer
from rich.console import Console

__all__ = ["ask_command", "format_reply"]

logger = logging.getLogger(__name__)
console = Console(stderr=True)


def format_reply(doc: dict[str, object], latency_s: float | None = None) -> str:
    """A few readable lines: status, answer, top risk drivers."""
    head = f"[{doc.get('status')}]"
    if latency_s is not None:
        head += f" ({latency_s * 1000:.0f} ms)"
    lines = [f"{head} {doc.get('answer', '')}"]
    risk = doc.get("risk")
    if isinstance(risk, dict) and risk.get("top_features"):
        drivers = ", ".join(
            f"{f['feature']} {f['contribution']:+.3f}" for f in risk["top_features"]
        )
        lines.append(f"  top features (gradient x input): {drivers}")
    return "\n".join(lines)


def ask_command(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="The customer to ask about.")],
    question: Annotated[
        str | None,
        typer.Option(help="Free-text question; 'risk', 'spend', 'who' words pick the focus."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for an answer.")] = 10.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole reply document as JSON.")
    ] = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Ask as this tenant: silo-<id> (only its own customers) or an operator "
            "[env FEDSTREAM_TENANT; default operator]."
        ),
    ] = None,
) -> None:
    """Ask the chatbot about a customer: a real Kafka round trip to the stream workers.

    The request goes to the tenant's chatbot.<tenant>.requests keyed by the customer id, so
    the worker that holds the customer's tables answers on chatbot.<tenant>.responses. A
    silo tenant asking about another silo's customer gets "not authorised" (exit code 3).
    Exit code 2 on timeout.
    """
    from app.cli import settings_from
    from app.cli_support import fail, require_broker
    from app.kafka.principals import tenant_principal
    from app.kafka.security import use
    from app.stream.ask import ChatClient
    from topics import check_tenant

    settings = settings_from(ctx, tenant=tenant)
    try:
        check_tenant(settings.tenant)
        # a tenant is who it is on Kafka: only its principal may use its topics
        use(settings.kafka_identity(default=tenant_principal(settings.tenant)))
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from None
    require_broker(settings, timeout)  # --timeout bounds the whole command
    try:
        client = ChatClient(settings.bootstrap, settings.namespace, settings.tenant)
    except Exception as exc:
        raise fail(f"could not reach Kafka at {settings.bootstrap}: {exc}") from None
    with client:
        reply = client.ask(customer_id, question, timeout)
    if reply is None:
        console.print(
            f"[bold red]no answer within {timeout:g} s[/]: is a stream worker running "
            f"(`fedstream worker`) against {settings.bootstrap}?"
        )
        raise typer.Exit(code=2)
    if json_output:
        typer.echo(orjson.dumps(reply.doc, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(format_reply(reply.doc, reply.latency_s))
    if reply.doc.get("status") == "not_authorised":
        raise typer.Exit(code=3)
