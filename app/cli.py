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
    principal: Annotated[
        str | None,
        typer.Option(
            help="Act on Kafka as this principal (admin, worker, bank, fl-server, silo-<id>, "
            "tenant-<t>) \\[env FEDSTREAM_KAFKA_PRINCIPAL]."
        ),
    ] = None,
    kafka_config: Annotated[
        Path | None,
        typer.Option(help="A principal's Kafka client config file \\[env FEDSTREAM_KAFKA_CONFIG]."),
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
             "connect_timeout_s": timeout, "kafka_principal": principal,
             "kafka_config": kafka_config}  # fmt: skip
    ctx.obj = {k: v for k, v in flags.items() if v is not None}
    _act_as(ctx.obj, _COMMAND_PRINCIPALS.get(ctx.invoked_subcommand or "", "admin"))


# Whom a command acts as on Kafka unless --principal/--kafka-config say otherwise
# (`ask` acts as its --tenant's principal, app.stream.chat_cli).
_COMMAND_PRINCIPALS = {"worker": "worker", "produce": "bank"}


def _act_as(flags: dict[str, Any], default: str) -> None:
    """Choose once, at the edge, the principal this process's Kafka clients act as."""
    from app.kafka.security import use

    try:
        use(Settings(**flags).kafka_identity(default))
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _fail(message: str) -> typer.Exit:
    from app.cli_support import fail

    return fail(message)


# -- kafka ----------------------------------------------------------------------------------
PortOpt = Annotated[
    int | None, typer.Option("--port", help="Client port \\[env FEDSTREAM_KAFKA_PORT].")
]


def _broker(settings: Settings) -> Any:
    from app.kafka.broker import LocalBroker
    from app.kafka.principals import principal_names

    return LocalBroker(
        settings.data_dir,
        settings.cache_dir,
        port=settings.kafka_port,
        controller_port=settings.controller_port,
        version=settings.kafka_version,
        heap=settings.kafka_heap,
        secure=not settings.kafka_insecure,
        principals=principal_names(settings.silo_ids, settings.chat_tenants),
    )


@kafka_app.command("start")
def kafka_start(
    ctx: typer.Context,
    port: PortOpt = None,
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure",
            help="PLAINTEXT, no authentication, no ACLs, topic auto-creation: a throwaway "
            "broker only \\[env FEDSTREAM_KAFKA_INSECURE].",
        ),
    ] = None,
) -> None:
    """Start the local broker in the background (downloads Kafka's jars the first time).

    Secure by default: SASL_SSL with SCRAM-SHA-512 (a certificate of the local CA), the
    StandardAuthorizer with no-ACL-means-deny, no topic auto-creation, one principal per
    component with its client config in <data-dir>/kafka/clients/ (0600).
    """
    from app.kafka.broker import BrokerError

    settings = settings_from(ctx, kafka_port=port, kafka_insecure=insecure)
    broker = _broker(settings)
    if not broker.secure:
        console.print(
            "[bold red]WARNING: insecure Kafka broker[/]: PLAINTEXT, no authentication, no "
            "ACLs, topics auto-created. Anyone who reaches the port can read every silo's "
            "data and write any topic. Use it only for throwaway runs."
        )
    try:
        started, seconds = broker.start()
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    where = f"credentials: {broker.clients_dir}" if broker.secure else "INSECURE"
    if started:
        console.print(f"Kafka {broker.version} started on {broker.bootstrap} in {seconds:.1f} s "
                      f"({where}; log: {broker.log})")  # fmt: skip
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


@kafka_app.command("configure")
def kafka_configure(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="The host name clients reach the broker by.")],
    port: PortOpt = None,
) -> None:
    """Write a broker's configuration, certificate and principals' client configs for
    another host (docker/compose.yaml) without starting it, and the argument file of
    `kafka-storage format @<file>` (0600: the initial passwords, never on a command line)."""
    from app.kafka.broker import LocalBroker
    from app.kafka.principals import principal_names

    settings = settings_from(ctx, kafka_port=port)
    broker = LocalBroker(settings.data_dir, settings.cache_dir, port=settings.kafka_port,
                         controller_port=settings.controller_port,
                         principals=principal_names(settings.silo_ids, settings.chat_tenants),
                         host=host)  # fmt: skip
    fmt = broker.configure()
    console.print(f"broker config {broker.properties}, client configs in {broker.clients_dir}, "
                  f"format arguments in {fmt}")  # fmt: skip


@kafka_app.command("passwd")
def kafka_passwd(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="The principal whose password changes.")],
) -> None:
    """Rotate a principal's SCRAM password (as the admin) and rewrite its client config."""
    from app.kafka.provision import rotate_password

    settings = settings_from(ctx)
    require_broker(settings)
    try:
        path = rotate_password(settings.bootstrap, principal)
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    console.print(f"new password of {principal} set; its client config: {path}")


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
def topics_apply(
    ctx: typer.Context,
    site: Annotated[
        list[int] | None,
        typer.Option(
            help="SILO, repeatable: this cluster is that silo's own site; its site-<SILO> "
            "principal may write fl.model.global here (its SuperNode relays the global model)."
        ),
    ] = None,
) -> None:
    """Create missing topics and update configs to match the catalogue (idempotent)."""
    from confluent_kafka import KafkaException

    from app.kafka.admin import apply_catalogue, make_admin
    from topics import catalogue, worker_changelogs

    settings = settings_from(ctx)
    require_broker(settings)
    specs = catalogue(
        settings.silo_ids, settings.input_partitions, operators=settings.operator_names
    ) + worker_changelogs(settings.input_partitions)  # the worker's tables (it creates them too)
    from app.fl.kafka_io import silo_group
    from app.kafka.provision import provision

    try:
        report = apply_catalogue(make_admin(settings.bootstrap), specs)
        groups = {s: silo_group(settings.model_name, s) for s in settings.silo_ids}
        access = provision(settings.bootstrap, settings.namespace, settings.silo_ids,
                           settings.chat_tenants, groups, prune=("stream",),
                           sites=site or ())  # fmt: skip
    except (KafkaException, RuntimeError) as exc:
        raise _fail(f"could not apply the catalogue at {settings.bootstrap}: {exc}") from None
    console.print(
        f"topics on {settings.bootstrap}: {len(report.created)} created, {len(report.updated)} "
        f"updated, {len(report.grown)} grown, {len(report.unchanged)} unchanged"
    )
    if access is not None:
        added = f", users added: {', '.join(access.users_added)}" if access.users_added else ""
        revoked = f", {access.revoked} stale ones deleted" if access.revoked else ""
        console.print(f"access: {access.acls} ACL bindings{revoked}{added}")
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
