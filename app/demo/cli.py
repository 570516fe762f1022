"""`fedstream demo`: parse the knobs and run :func:`app.demo.runner.run_demo`."""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["demo_command"]

logger = logging.getLogger(__name__)


def demo_command(
    ctx: typer.Context,
    duration: Annotated[
        float, typer.Option(min=10, help="Seconds of streaming and training before the report.")
    ] = 150.0,
    rounds: Annotated[
        int,
        typer.Option(min=0, help="Stop earlier after this many federated rounds (0 = no limit)."),
    ] = 12,
    silos: Annotated[int, typer.Option(min=1, max=8, help="Data silos = Flower SuperNodes.")] = 3,
    rate: Annotated[
        float, typer.Option(min=1, help="Events per second sent by the synthetic bank.")
    ] = 600.0,
    customers: Annotated[int, typer.Option(min=10, help="Customers of the synthetic bank.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic bank.")] = 0,
    questions: Annotated[
        int, typer.Option(min=0, help="Chatbot questions asked at the end (one per customer).")
    ] = 3,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per silo micro-batch.")] = 256,
    batch_ms: Annotated[int, typer.Option(min=1, help="Max age of a micro-batch, ms.")] = 1000,
    max_rows_per_round: Annotated[
        int, typer.Option(min=32, help="Most new rows a silo trains on per round.")
    ] = 5000,
    min_rows_per_round: Annotated[
        int,
        typer.Option(
            min=1,
            help="Fewest new rows a silo takes part with; with fewer it waits for a later round.",
        ),
    ] = 32,
    round_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows per silo a round waits for (up to round-wait s; round 1 waits for 250, "
            "doubling each round up to this).",
        ),
    ] = 2000,
    preset: Annotated[
        str, typer.Option(help="Synthetic bank preset: realistic (default), single or classic.")
    ] = "realistic",
    fresh: Annotated[
        bool,
        typer.Option(help="Start the demo's own broker with empty storage (else keep its data)."),
    ] = True,
    live: Annotated[bool, typer.Option(help="Show the live view (only on a terminal).")] = True,
    pipeline: Annotated[
        str,
        typer.Option(
            help="Pipeline the worker runs and Flower trains on: fraud (built in), "
            "package.module[:attr] or file.py[:attr]; other pipelines get no chatbot questions."
        ),
    ] = "fraud",
) -> None:
    """Run the whole system locally and write a report (the README's first command).

    Starts a local Kafka broker (Maven jars, cached after the first run; or uses
    --bootstrap / FEDSTREAM_BOOTSTRAP_SERVERS), applies the topic catalogue, starts a stream
    worker, Flower (one SuperLink, one SuperNode per silo) and a synthetic bank producing at
    a steady rate. A live view shows events/s, batches per silo, the round and the
    prequential ROC AUC (global and per silo). At the end it asks the chatbot about a few
    customers and writes <data-dir>/reports/<timestamp>/ (auc.png with the centralised
    baseline, report.md with throughput and latencies). Everything it started is stopped,
    also on Ctrl-C. The defaults finish in about 2-3 minutes on 2 cores.
    """
    from app.cli import settings_from
    from app.demo.runner import DemoOptions, run_demo

    console = Console()
    settings = settings_from(ctx, silos=silos)
    if settings.bootstrap_servers:  # an existing cluster: it must answer (else own broker)
        from app.cli_support import require_broker

        require_broker(settings)
    options = DemoOptions(
        duration_s=duration,
        rounds=rounds,
        rate=rate,
        customers=customers,
        seed=seed,
        questions=questions,
        batch_rows=batch_rows,
        batch_ms=batch_ms,
        max_rows_per_round=max_rows_per_round,
        min_rows_per_round=min_rows_per_round,
        round_rows=round_rows,
        preset=preset,
        fresh_broker=fresh,
        live=live,
        pipeline=pipeline,
    )
    from app.pipeline.load import PipelineError, is_builtin, load_pipeline

    if not is_builtin(pipeline):
        try:
            load_pipeline(pipeline)  # a wrong path fails here, not in the worker's log
        except PipelineError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=1) from None
        options = dataclasses.replace(options, questions=0)  # its worker has no chatbot
    try:
        out = run_demo(settings, options, console)
    except KeyboardInterrupt:
        console.print("[yellow]demo interrupted; everything it started was stopped[/]")
        raise typer.Exit(code=130) from None
    except Exception as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(code=1) from None
    console.print(f"[bold green]done[/]: {out / 'report.md'}")
