"""The one CLI: `fedstream ...`. It parses, sets up logging and wires; the work lives elsewhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from app.cli_support import require_broker
from app.settings import Settings

__all__ = ["app", "main", "settings_from"]

logger = logging.getLogger(__name__)
console = Console(stderr=True)

app = typer.Typer(
    name="fedstream",
    help="Federated learning on streaming bank data: Kafka + Faust + Flower + JAX/Flax.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
kafka_app = typer.Typer(
    help="Run a local single-node Apache Kafka broker (KRaft).", no_args_is_help=True
)
topics_app = typer.Typer(
    help="The topic catalogue: show it and apply it to the broker.", no_args_is_help=True
)
bench_app = typer.Typer(
    help="Benchmarks that print their figures (last line: one JSON object).", no_args_is_help=True
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings from the environment, then the global flags, then a command's own flags."""
    base: dict[str, Any] = dict(ctx.obj or {}) if ctx is not None else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


@app.callback()
def _root(
    ctx: typer.Context,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap servers \\[env FEDSTREAM_BOOTSTRAP_SERVERS]."),
    ] = None,
    silos: Annotated[
        int | None, typer.Option(help="Number of data silos \\[env FEDSTREAM_SILOS].")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where logs, state and reports go \\[env FEDSTREAM_DATA_DIR]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds to wait for the broker \\[env FEDSTREAM_CONNECT_TIMEOUT_S]."
        ),
    ] = None,
) -> None:
    from app.kafka.reach import set_client_log_level

    set_client_log_level(debug=log_level.upper() == "DEBUG")
    logging.basicConfig(
        level=log_level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
    )
    if log_level.upper() == "DEBUG":  # app.model quiets JAX's TPU probe line otherwise
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.DEBUG)
    flags = {"bootstrap_servers": bootstrap, "silos": silos, "data_dir": data_dir,
             "connect_timeout_s": timeout}  # fmt: skip
    ctx.obj = {k: v for k, v in flags.items() if v is not None}


def _fail(message: str) -> typer.Exit:
    from app.cli_support import fail

    return fail(message)


# -- kafka ----------------------------------------------------------------------------------
PortOpt = Annotated[
    int | None, typer.Option("--port", help="Client port \\[env FEDSTREAM_KAFKA_PORT].")
]


def _broker(settings: Settings) -> Any:
    from app.kafka.broker import LocalBroker

    return LocalBroker(
        settings.data_dir,
        settings.cache_dir,
        port=settings.kafka_port,
        controller_port=settings.controller_port,
        version=settings.kafka_version,
        heap=settings.kafka_heap,
    )


@kafka_app.command("start")
def kafka_start(ctx: typer.Context, port: PortOpt = None) -> None:
    """Start the local broker in the background (downloads Kafka's jars the first time)."""
    from app.kafka.broker import BrokerError

    broker = _broker(settings_from(ctx, kafka_port=port))
    try:
        started, seconds = broker.start()
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    if started:
        console.print(f"Kafka {broker.version} started on {broker.bootstrap} in {seconds:.1f} s "
                      f"(log: {broker.log})")  # fmt: skip
    else:
        console.print(f"Kafka is already running on {broker.bootstrap} (pid {broker.pid()}).")


@kafka_app.command("stop")
def kafka_stop(ctx: typer.Context, port: PortOpt = None) -> None:
    """Stop the local broker gracefully (SIGTERM, wait, then SIGKILL)."""
    broker = _broker(settings_from(ctx, kafka_port=port))
    if broker.stop():
        console.print("Kafka stopped.")
    else:
        console.print("Kafka was not running.")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context, port: PortOpt = None) -> None:
    """Say whether the local broker runs, where, and with which version."""
    status = _broker(settings_from(ctx, kafka_port=port)).status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    console.print(f"Kafka {status.version} on {status.bootstrap}: {state}; log {status.log}")
    if not status.running:
        raise typer.Exit(code=3)


@kafka_app.command("logs")
def kafka_logs(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines.")] = 40,
    port: PortOpt = None,
) -> None:
    """Print the end of the local broker's logs."""
    typer.echo(_broker(settings_from(ctx, kafka_port=port)).tail(lines))


# -- topics ---------------------------------------------------------------------------------
@topics_app.command("apply")
def topics_apply(ctx: typer.Context) -> None:
    """Create missing topics and update configs to match the catalogue (idempotent)."""
    from confluent_kafka import KafkaException

    from app.kafka.admin import apply_catalogue, make_admin
    from topics import catalogue, worker_changelogs

    settings = settings_from(ctx)
    require_broker(settings)
    specs = catalogue(
        settings.silo_ids, settings.input_partitions, operators=settings.operator_names
    ) + worker_changelogs(settings.input_partitions)  # the worker's tables (it creates them too)
    try:
        report = apply_catalogue(make_admin(settings.bootstrap), specs)
    except KafkaException as exc:
        raise _fail(f"could not reach Kafka at {settings.bootstrap}: {exc}") from None
    console.print(
        f"topics on {settings.bootstrap}: {len(report.created)} created, {len(report.updated)} "
        f"updated, {len(report.grown)} grown, {len(report.unchanged)} unchanged"
    )
    for problem in report.problems:
        console.print(f"[yellow]warning:[/] {problem}")


@topics_app.command("list")
def topics_list(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option(help="Show the catalogue without asking the broker.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per topic.")] = False,
) -> None:
    """Show the catalogue and, per topic, what exists on the broker.

    Piped (not a terminal) it prints tab-separated lines with a header; --json one JSON
    object per line. Names and values are never cut.
    """
    from app.cli_support import print_table
    from topics import catalogue

    settings = settings_from(ctx)
    specs = catalogue(
        settings.silo_ids, settings.input_partitions, operators=settings.operator_names
    )
    states: dict[str, Any] = {}
    if not offline:
        from app.kafka.admin import describe_topics, make_admin

        require_broker(settings)
        try:
            states = describe_topics(make_admin(settings.bootstrap))
        except Exception as exc:
            raise _fail(f"could not reach Kafka at {settings.bootstrap}: {exc}") from None
    rows = []
    for spec in specs:
        state = states.get(spec.name)
        if offline:
            where = "-"
        elif state is None:
            where = "missing"
        else:
            drift = sorted(k for k, v in spec.configs.items() if state.configs.get(k) != v)
            ok = state.partitions == spec.partitions and not drift
            where = "ok" if ok else f"{state.partitions} partitions, drift {drift}"
        configs = ", ".join(f"{k}={v}" for k, v in spec.configs.items() if k != "retention.ms")
        rows.append([spec.name, spec.partitions, configs, spec.key, spec.value, where])
    columns = ["topic", "partitions", "configs", "key", "value", "on broker"]
    print_table(f"fedstream topics ({settings.bootstrap})", columns, rows, json_output,
                styles={"ok": "green", "missing": "red"})  # fmt: skip


def _register_optional() -> None:
    """Attach the command groups of the other packages (each owns its CLI module)."""
    from app.fl.cli import baseline_command, bench_fl_command, fl_app
    from app.produce.cli import produce_app
    from app.stream.cli import register as register_stream

    app.add_typer(produce_app, name="produce")
    app.add_typer(fl_app, name="fl")
    app.command("baseline")(baseline_command)
    bench_app.command("fl")(bench_fl_command)
    from bench.stream import bench_stream_command

    bench_app.command("stream")(bench_stream_command)

    register_stream(app, settings_from)

    from app.stream.chat_cli import ask_command

    app.command("ask")(ask_command)

    from app.demo.cli import demo_command
    from app.ops.cli import exporter_command, status_command

    app.command("status")(status_command)
    app.command("exporter")(exporter_command)

    app.command("demo")(demo_command)

    from bench.chat import bench_chat_command

    bench_app.command("chat")(bench_chat_command)

    from bench.quality import bench_quality_command

    bench_app.command("quality")(bench_quality_command)


def main() -> None:
    _register_optional()
    app()
