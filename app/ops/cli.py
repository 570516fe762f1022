"""``fedstream status``: the deployment at a glance, as one screen, JSON, or a wait."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import orjson
import typer

__all__ = ["exporter_command", "status_command"]

logger = logging.getLogger(__name__)


def status_command(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    watch: Annotated[bool, typer.Option(help="Refresh every --interval seconds.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between samples (events/s are over it).")
    ] = 1.0,
    wait_drained: Annotated[
        bool,
        typer.Option(help="Wait until the worker has processed every input record; exit 0."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="With --wait-drained: give up (exit 2) after S s.")
    ] = 600.0,
) -> None:
    """Broker, catalogue, worker lag per input partition, rows waiting per silo, dead
    letters, events/s, the latest federated round and the model the worker scores with.

    `--wait-drained` exits 0 once the worker group has committed every input record
    (for scripts: replay, wait, then train); exit 2 when --timeout passes first.
    """
    from app.cli import settings_from
    from app.cli_support import fail, is_terminal, require_broker
    from app.ops.offsets import KafkaReader
    from app.ops.status import collect_status, drained, take_sample

    settings = settings_from(ctx)
    require_broker(settings, timeout if wait_drained else None)
    with KafkaReader(settings.bootstrap, timeout_s=max(settings.connect_timeout_s, 5.0)) as reader:
        if wait_drained:
            deadline = time.monotonic() + timeout
            while True:
                _sample, lags = take_sample(reader, settings)
                if drained(lags):
                    typer.echo(f"drained: {sum(p.end for p in lags):,} input records processed")
                    return
                if time.monotonic() > deadline:
                    lag = sum(p.lag for p in lags)
                    raise fail(f"not drained within {timeout:g} s: {lag:,} input records left", 2)
                time.sleep(min(0.5, interval))
        before, _ = take_sample(reader, settings)
        time.sleep(interval)
        while True:
            doc, before = collect_status(reader, settings, before)
            _show(doc, json_output, watch and is_terminal())
            if not watch:
                return
            time.sleep(interval)


def _show(doc: dict[str, Any], json_output: bool, clear: bool) -> None:
    from app.ops.status_view import status_lines

    if json_output:
        typer.echo(orjson.dumps(doc).decode())
        return
    if clear:
        typer.echo("\x1b[2J\x1b[H", nl=False)
    typer.echo("\n".join(status_lines(doc)))


def exporter_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of /metrics.")] = 9311,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between refreshes.")] = 10.0,
) -> None:
    """Serve Prometheus gauges of the federated rounds (fl.metrics) and of the consumer
    groups' lag (worker inputs, rows each silo has not trained on), read from Kafka."""
    from app.cli import settings_from
    from app.cli_support import fail, require_broker
    from app.ops.exporter import run_exporter

    settings = settings_from(ctx)
    require_broker(settings)
    try:
        run_exporter(settings, port, interval)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        return
