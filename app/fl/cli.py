"""CLI of federated training: ``fedstream fl up|status|down``, ``baseline``, ``bench fl``.

Register in ``app/cli.py`` (``_register_optional``)::

    from app.fl.cli import baseline_command, bench_fl_command, fl_app
    app.add_typer(fl_app, name="fl")
    app.command("baseline")(baseline_command)
    bench_app.command("fl")(bench_fl_command)   # or app.command("bench-fl")

Parsing and wiring only; the work is in :mod:`app.fl.processes`, :mod:`app.fl.baseline`
and :mod:`bench.fl`.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from app.settings import Settings

__all__ = ["baseline_command", "bench_fl_command", "fl_app"]

logger = logging.getLogger(__name__)
console = Console(stderr=True)

fl_app = typer.Typer(
    help="Federated training on Flower's deployment engine (SuperLink + one SuperNode per silo).",
    no_args_is_help=True,
)

RunConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--run-config",
        "-c",
        help="Run-config override KEY=VALUE (TOML value), repeatable, e.g. -c strategy='fedprox'.",
    ),
]


PipelineOpt = Annotated[
    str | None,
    typer.Option(
        help="Train on this pipeline's spec, checked against the one the stream publishes: "
        "fraud (built in), package.module[:attr] or file.py[:attr]. Default: the spec the "
        "stream publishes on features.spec.",
    ),
]


def _pipeline_overrides(settings: Settings, ref: str | None) -> dict[str, Any]:
    """``spec-version``/``n-features`` of ``--pipeline``; one-line error on a mismatch."""
    if ref is None:
        return {}
    from app.fl.spec_source import SpecMismatch, pipeline_run_config, published_specs
    from app.pipeline.load import PipelineError
    from topics import FEATURE_SPECS, namespaced

    published = published_specs(settings.bootstrap, namespaced(FEATURE_SPECS, settings.namespace))
    try:
        return pipeline_run_config(ref, settings, published)
    except (SpecMismatch, PipelineError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _settings(ctx: typer.Context | None, **overrides: Any) -> Settings:
    """Settings from the environment, the root command's flags, then this command's."""
    base: dict[str, Any] = dict(ctx.obj or {}) if ctx is not None else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    import tomllib

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare string
    return out


def _fail(message: str) -> typer.Exit:
    from app.cli_support import fail

    return fail(message)


@fl_app.command("up")
def fl_up(
    ctx: typer.Context,
    silos: Annotated[int | None, typer.Option(help="Number of silos (SuperNodes).")] = None,
    run_config: RunConfigOpt = None,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--process-per-message",
            help="Run each silo's ClientApps in one long-lived process that keeps JAX and "
            "the app loaded (default), or let Flower start a new process per message.",
        ),
    ] = True,
    insecure: Annotated[
        bool,
        typer.Option(
            help="INSECURE, throwaway runs only: plaintext HTTP and no SuperNode "
            "authentication (by default TLS from the local CA and registered SuperNodes)."
        ),
    ] = False,
    pipeline: PipelineOpt = None,
    silo_kafka: Annotated[
        list[str] | None,
        typer.Option(
            help="SILO=FILE, repeatable: that silo's SuperNode reads its own site's Kafka "
            "cluster with this client config (its bootstrap, principal and CA) instead of "
            "the operator's; the site grants its group itself (`topics apply` there).",
        ),
    ] = None,
) -> None:
    """Start a SuperLink and one SuperNode per silo in the background, then `flwr run`.

    The SuperLink serves TLS with a certificate of the federation's CA and admits only
    registered SuperNodes; each SuperNode has its own EC key pair (all under
    <data-dir>/pki, private keys mode 0600).
    """
    from app.cli_support import require_broker
    from app.fl.config import DEFAULTS, FLConfig, FLConfigError
    from app.fl.processes import FLError, up

    settings = _settings(ctx, silos=silos)
    overrides = {"model-name": settings.model_name, **_overrides(run_config)}
    try:  # a bad run config is reported before the broker is asked
        FLConfig.from_run_config({**DEFAULTS, **overrides})
    except FLConfigError as exc:
        raise _fail(str(exc)) from None
    from app.fl.sites import SiteError, parse_site_kafka

    try:
        sites = parse_site_kafka(silo_kafka)
    except SiteError as exc:
        raise _fail(str(exc)) from None
    require_broker(settings)
    overrides = {**_pipeline_overrides(settings, pipeline), **overrides}
    try:
        dep = up(
            data_dir=settings.data_dir,
            bootstrap=settings.bootstrap,
            silo_ids=settings.silo_ids,
            superlink_port=settings.superlink_port,
            supernode_base_port=settings.supernode_base_port,
            run_config=overrides,
            warm_clients=warm,
            insecure=insecure,
            site_kafka=sites,
        )
    except FLError as exc:
        raise _fail(str(exc)) from None
    if insecure:
        console.print("[bold red]INSECURE:[/] Flower runs without TLS and SuperNode auth.")
    console.print(
        f"federated training up: SuperLink 127.0.0.1:{dep.superlink_port}, "
        f"{len(dep.supernodes)} SuperNodes, run {dep.run_ids[-1]}; logs in {dep.root / 'logs'}"
    )


@fl_app.command("configure")
def fl_configure(
    ctx: typer.Context,
    superlink_host: Annotated[str, typer.Option(help="The host name SuperNodes reach it by.")],
    silos: Annotated[int | None, typer.Option(help="Number of silos (SuperNodes).")] = None,
) -> None:
    """Write Flower's TLS certificate, SuperNode key pairs, CLI connection and run config
    for SuperLink and SuperNodes on other hosts (docker/compose.yaml), without starting them."""
    from app.fl.deploy import configure

    settings = _settings(ctx, silos=silos)
    clients = settings.data_dir / "kafka" / "clients"
    files = configure(settings.data_dir, superlink_host, settings.superlink_port,
                      settings.silo_ids, settings.bootstrap, clients)  # fmt: skip
    console.print(f"SuperLink certificate {files.security.tls.cert if files.security.tls else ''}"
                  f", {len(files.nodes)} SuperNode key pairs, connection {files.connection}, "
                  f"run config {files.run_config}")  # fmt: skip


@fl_app.command("register")
def fl_register(
    ctx: typer.Context,
    silos: Annotated[int | None, typer.Option(help="Number of silos (SuperNodes).")] = None,
) -> None:
    """Register every silo's SuperNode public key with the SuperLink `fl configure` named."""
    from app.fl.deploy import register
    from app.fl.flower_auth import RegistrationError

    settings = _settings(ctx, silos=silos)
    try:
        ids = register(settings.data_dir, settings.silo_ids)
    except RegistrationError as exc:
        raise _fail(str(exc)) from None
    console.print(f"SuperNodes registered: {ids or 'all were already'}")


@fl_app.command("status")
def fl_status(ctx: typer.Context) -> None:
    """Processes, the latest round and its metrics (from fl.metrics)."""
    from app.fl.processes import status

    settings = _settings(ctx)
    try:
        st = status(settings.data_dir)
    except Exception as exc:  # the broker went away: fl.metrics cannot be read
        raise _fail(f"could not read fl.metrics: {exc}") from None
    if st is None:
        console.print("federated training is not running (no state in data dir).")
        raise typer.Exit(code=3)
    for name, alive in st.processes.items():
        restarts, last = st.restarts.get(name, (0, None))
        seen = f" (restarts {restarts}, last {time.strftime('%H:%M:%S', time.localtime(last))})"
        extra = seen if restarts and last else ""
        console.print(f"{name:>16}: {'[green]running[/]' if alive else '[red]stopped[/]'}{extra}")
    console.print(f"{'runs':>16}: {', '.join(st.run_ids)}")
    security = "TLS + SuperNode auth" if st.secure else "[bold red]INSECURE[/] (no TLS, no auth)"
    console.print(f"{'security':>16}: {security}")
    if st.latest is None:
        console.print("no round published yet")
    else:
        from app.fl.status_text import status_lines

        for line in status_lines(st.latest):
            console.print(line)
        typer.echo(orjson.dumps(st.latest, option=orjson.OPT_INDENT_2).decode())
    if not all(st.processes.values()):
        raise typer.Exit(code=3)


@fl_app.command("restart-silo")
def fl_restart_silo(
    ctx: typer.Context, silo: Annotated[int, typer.Argument(help="Silo id to restart.")]
) -> None:
    """Restart one silo's SuperNode (and runtime) through the running supervisor."""
    from app.fl.processes import FLDeployment
    from app.fl.supervisor import request, wait_for

    data_dir = _settings(ctx).data_dir
    dep = FLDeployment.load(data_dir)
    entry = dep.supernodes.get(str(silo)) if dep else None
    if dep is None or entry is None:
        raise _fail(f"no silo {silo} in the deployment at {data_dir}")
    request(data_dir, "restart", silo)
    try:
        pid = wait_for(data_dir, silo, int(entry.get("pid") or 0))
    except TimeoutError as exc:
        raise _fail(f"{exc}; is the supervisor running (`fl status`)?") from None
    console.print(f"silo {silo} restarted: SuperNode pid {pid}")


@fl_app.command("add-silo")
def fl_add_silo(
    ctx: typer.Context, silo: Annotated[int, typer.Argument(help="Silo id to add.")]
) -> None:
    """Start a SuperNode (and runtime) for one more silo; it joins the next rounds."""
    from app.fl.processes import FLDeployment, FLError, check_settings
    from app.fl.supervisor import request, wait_for
    from app.ports import free_port

    settings = _settings(ctx)
    dep = FLDeployment.load(settings.data_dir)
    if dep is None:
        raise _fail(f"no federated deployment in {settings.data_dir}; run `fl up` first")
    if str(silo) in dep.supernodes:
        raise _fail(f"silo {silo} is already part of the deployment")
    try:
        check_settings(dep.bootstrap, [silo], {"model-name": dep.model_name})
    except FLError as exc:
        raise _fail(str(exc)) from None
    request(settings.data_dir, "add", silo, port=free_port())
    try:
        pid = wait_for(settings.data_dir, silo, None)
    except TimeoutError as exc:
        raise _fail(f"{exc}; is the supervisor running (`fl status`)?") from None
    console.print(f"silo {silo} added: SuperNode pid {pid}")


@fl_app.command("down")
def fl_down(ctx: typer.Context) -> None:
    """Stop the supervisor, the SuperNodes and the SuperLink (SIGTERM, wait, SIGKILL)."""
    from app.fl.processes import down

    stopped = down(_settings(ctx).data_dir)
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running.")


def baseline_command(
    ctx: typer.Context,
    run_config: RunConfigOpt = None,
    same_rows: Annotated[
        bool,
        typer.Option(
            "--same-rows/--all-rows",
            help="Replay the federated run's rounds from fl.metrics (the same rows, default) "
            "or use every frame on the silo topics.",
        ),
    ] = True,
    pipeline: PipelineOpt = None,
) -> None:
    """Train the same model centrally on all silos' batches pooled (prequential reference)."""
    from app.cli_support import require_broker
    from app.fl.baseline import read_silo_frames, rounds_rows_from_metrics, run_baseline
    from app.fl.config import DEFAULTS, FLConfig, FLConfigError
    from app.fl.kafka_io import read_metrics
    from app.fl.server_app import resolve_spec

    settings = _settings(ctx)
    require_broker(settings)
    try:
        cfg = FLConfig.from_run_config(
            {**DEFAULTS, "model-name": settings.model_name,
             **_pipeline_overrides(settings, pipeline), **_overrides(run_config)}
        )  # fmt: skip
    except FLConfigError as exc:
        raise _fail(str(exc)) from None
    spec_version, n_features = resolve_spec(cfg)
    frames = [
        read_silo_frames(settings.bootstrap, s, spec_version, n_features) for s in settings.silo_ids
    ]
    if not any(frames):
        raise _fail(f"no frames of spec {spec_version} on the silo topics at {settings.bootstrap}")
    rounds_rows = (
        rounds_rows_from_metrics(read_metrics(settings.bootstrap, cfg.model_name))
        if same_rows
        else []
    )
    report = run_baseline(
        frames, cfg, n_features, silo_ids=settings.silo_ids, rounds_rows=rounds_rows or None
    )
    for line in report.lines():
        typer.echo(line)


def bench_fl_command(
    ctx: typer.Context,
    rounds: Annotated[int, typer.Option(help="Rounds per configuration.")] = 4,
    rows: Annotated[int, typer.Option(help="Rows per silo per round.")] = 10_000,
    security: Annotated[
        str,
        typer.Option(
            help="both: 2-silo rounds with security off and on, compared; "
            "current: every configuration on the configured broker."
        ),
    ] = "both",
    repeats: Annotated[
        int, typer.Option(min=1, help="--security both: measured legs per mode (interleaved).")
    ] = 2,
    warmup: Annotated[
        bool, typer.Option(help="--security both: one leg per mode first, not compared.")
    ] = False,
) -> None:
    """Round wall time at 2 and 4 silos, Flower overhead, training ratio, decode rows/s."""
    from bench.fl import bench_fl_command as run

    run(ctx, rounds=rounds, rows=rows, security=security, repeats=repeats, warmup=warmup)
