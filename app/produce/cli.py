"""`fedstream produce ...`: send synthetic, CSV or UCI events to Kafka.

It parses flags, builds Settings and calls the real code (generators + ``send_events``).
Register with ``app.add_typer(produce_app, name="produce")``.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console

from app.settings import Settings

__all__ = ["produce_app"]

logger = logging.getLogger(__name__)
console = Console(stderr=True)

produce_app = typer.Typer(
    name="produce",
    help="Send bank events to Kafka: a synthetic bank with fraud, any CSV, or the UCI data.",
    no_args_is_help=True,
)

BootstrapOpt = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (default: settings, i.e. the local broker)."),
]
RateOpt = Annotated[
    float | None,
    typer.Option(
        min=0.001, help="Max events per second (token bucket); default as fast as possible."
    ),
]
ProgressOpt = Annotated[
    bool, typer.Option(help="Show a live events/s progress line (only on a terminal).")
]


def _settings(ctx: typer.Context | None, **overrides: Any) -> Settings:
    """Settings from the environment, the root CLI's flags (``ctx.obj``), then these flags."""
    base: dict[str, Any] = dict(ctx.obj or {}) if ctx is not None and ctx.obj else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


def _send(
    settings: Settings, events: Any, title: str, rate: float | None, progress: bool, **kw: Any
) -> None:
    from app.cli_support import require_broker
    from app.kafka.clients import make_producer
    from app.produce.sender import send_events

    require_broker(settings)  # else the records wait in the producer's queue for minutes
    logger.info("sending %s to %s", title, settings.bootstrap)
    producer = make_producer(settings.bootstrap)
    summary = send_events(producer, events, rate=rate, progress=progress, **kw)
    from app.cli_support import print_table

    print_table(f"{title} -> {settings.bootstrap}", ["metric", "value"], [
        ("customer events", f"{summary.customers:,}"),
        ("transaction events", f"{summary.transactions:,}"),
        ("invalid events", f"{summary.invalid:,}"),
        ("failed deliveries", f"{summary.failed:,}"),
        ("still queued", f"{summary.unflushed:,}"),
        ("seconds", f"{summary.seconds:.2f}"),
        ("events/s", f"{summary.events_per_s:,.0f}"),
        ("interrupted", "yes" if summary.interrupted else "no"),
    ])  # fmt: skip
    if summary.failed or summary.unflushed:
        raise typer.Exit(code=1)
    if summary.interrupted:
        raise typer.Exit(code=130)


def _fail(message: str) -> typer.Exit:
    from app.cli_support import fail

    return fail(message)


@produce_app.command("synthetic")
def synthetic(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 1000,
    silos: Annotated[
        int | None, typer.Option(min=1, help="Number of silos (default: settings.silos).")
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many events, customers included."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            min=1, help="Stop after this many seconds of EVENT time (e.g. 86400 = a day)."
        ),
    ] = None,
    rate: RateOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed; equal seeds give equal events.")] = 0,
    preset: Annotated[
        str,
        typer.Option(
            help="realistic (rare fraud in modes: card testing, account takeover, stolen "
            "card, misuse), single (one near-linear fraud mode) or classic (easy)."
        ),
    ] = "realistic",
    invalid: Annotated[
        int, typer.Option(min=0, help="Mix in this many invalid events (to exercise the DLQ).")
    ] = 0,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate a synthetic bank (customers, transactions, injected fraud) and send it.

    Without --events or --duration it sends 100,000 events.
    """
    from app.produce.synthetic import SyntheticBank, invalid_events, with_invalid

    settings = _settings(ctx, bootstrap_servers=bootstrap, silos=silos)
    if events is None and duration is None:
        events = 100_000
    try:
        bank = SyntheticBank(customers=customers, silos=settings.silos, seed=seed, preset=preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    stream: Any = bank.events(n_events=events, duration_s=duration)
    if invalid:
        every = max(1, (events or 100_000) // (invalid + 1))
        stream = with_invalid(stream, invalid_events(seed), invalid, every=every)
    total = events + invalid if events else None
    _send(settings, stream, f"synthetic bank (seed {seed})", rate, progress, total=total)


@produce_app.command("csv")
def csv_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file with a header row.", exists=True)],
    time_col: Annotated[
        str | None, typer.Option(help="Column with the event time (default: found by name).")
    ] = None,
    key_col: Annotated[
        str | None,
        typer.Option(help="Column with the customer key (default: found by name, else per row)."),
    ] = None,
    label_col: Annotated[
        str | None,
        typer.Option(help="Column with the 0/1 label (default: found by name; empty = unknown)."),
    ] = None,
    silo_col: Annotated[
        str | None, typer.Option(help="Column with the silo id; default crc32(key) % n-silos.")
    ] = None,
    n_silos: Annotated[
        int | None, typer.Option(min=1, help="Silos for hashing keys (default: settings.silos).")
    ] = None,
    amount_col: Annotated[
        str | None, typer.Option(help="Column with the amount (default: a column named amount).")
    ] = None,
    txn_id_col: Annotated[
        str | None, typer.Option(help="Column with the transaction id (default: file-line).")
    ] = None,
    time_format: Annotated[
        str, typer.Option(help="Time format: epoch (seconds), iso (8601) or auto.")
    ] = "auto",
    customers: Annotated[
        bool, typer.Option(help="Emit a minimal customer event before each key's first txn.")
    ] = True,
    start: Annotated[
        str | None,
        typer.Option(help="Start of a relative time column (ISO 8601 or epoch seconds)."),
    ] = None,
    speedup: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Replay at N x real (event) time; default as fast as possible."
        ),
    ] = None,
    rate: RateOpt = None,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Replay a CSV of transactions in time order (other numeric columns become attrs)."""
    from app.produce.csv_replay import CsvReplay, CsvReplayError, TimeFormat, parse_time

    settings = _settings(ctx, bootstrap_servers=bootstrap, silos=n_silos)
    if time_format not in ("epoch", "iso", "auto"):
        raise _fail(f"--time-format must be epoch, iso or auto, not {time_format!r}.")
    try:
        start_ts = None if start is None else parse_time(start)
    except ValueError:
        raise _fail(f"--start {start!r} is neither ISO 8601 nor epoch seconds.") from None
    replay = CsvReplay(
        file, time_col, key_col, label_col=label_col, silo_col=silo_col,
        n_silos=settings.silos, amount_col=amount_col, txn_id_col=txn_id_col,
        time_format=cast(TimeFormat, time_format),
        emit_customers=customers, start=start_ts,
    )  # fmt: skip
    try:
        events = replay.events()
        first = next(events, None)  # reads the file: the notes are complete now
        for note in replay.notes:
            typer.echo(f"{file.name}: {note}", err=True)
        stream = itertools.chain([first] if first is not None else [], events)
        _send(settings, stream, f"CSV {file.name}", rate, progress, speedup=speedup)
    except CsvReplayError as exc:
        raise _fail(str(exc)) from None


@produce_app.command("uci")
def uci(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(help="UCI_Credit_Card.csv (default: data dir, then ../shared/data)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N customers (default all 30,000).")
    ] = None,
    silos: Annotated[
        int | None, typer.Option(min=1, help="Silos for hashing customers (default: settings).")
    ] = None,
    rate: RateOpt = None,
    bootstrap: BootstrapOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Replay the real UCI credit card data: one profile + six monthly statements per customer."""
    from app.produce.uci import UciReplay, find_uci_csv

    settings = _settings(ctx, bootstrap_servers=bootstrap, silos=silos)
    path = file or find_uci_csv(settings.data_dir)
    if path is None or not path.is_file():
        raise _fail(f"UCI_Credit_Card.csv not found (looked in {settings.data_dir}); use --file.")
    replay = UciReplay(path, n_silos=settings.silos, limit=limit)
    total = 7 * limit if limit else None
    _send(settings, replay.events(), f"UCI {path.name}", rate, progress, total=total)
