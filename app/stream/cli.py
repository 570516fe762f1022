"""`fedstream worker` and `fedstream tail`: run the stream worker, look at a topic."""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import Annotated, Any

import typer

__all__ = ["register"]

logger = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0002


def _use_uvloop() -> None:
    """Run the worker on uvloop. Faust's aiokafka connections do their TLS in the event
    loop; asyncio's is Python (sslproto), uvloop's is not. bench chat, 4 legs per mode on a
    quiet 2-core box: the secure worker's extra CPU per event +9-12 % on asyncio (3 runs),
    -2 / -6 % on uvloop (2 runs); the chat p50 cost of security +23-36 % -> +10 / +0.3 %."""
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:  # no uvloop for this platform (Windows): asyncio's own loop
        logger.warning("uvloop is not installed: the worker runs on asyncio's event loop")


def _logging_config(faust_level: str) -> dict[str, Any]:
    """Faust's logging setup, but fedstream's loggers keep the CLI's --log-level.

    Faust (mode) puts ``--loglevel`` (warn) on the root logger AND on its handler (again
    when it sets up its terminal spinner), which hid the worker's own INFO progress line;
    here the handler passes everything, the root stays at Faust's level and the ``app``
    loggers at the CLI's (INFO by default).
    """
    from mode.utils.logging import level_number

    return {
        "merge": True,
        "handlers": {"default": {"level": "DEBUG", "class": "colorlog.StreamHandler",
                                 "formatter": "colored"}},
        "root": {"level": level_number(faust_level), "handlers": ["default"]},
        "loggers": {"app": {"level": logging.getLogger().getEffectiveLevel()}},
    }  # fmt: skip


def _ensure_changelogs(settings: Any) -> None:
    """Create the table changelogs before Faust starts (why: app.stream.changelogs)."""
    from app.cli_support import fail
    from app.kafka.admin import make_admin
    from app.stream.changelogs import ChangelogSetupError, ensure_changelogs

    try:
        ensure_changelogs(make_admin(settings.bootstrap), settings.input_partitions,
                          settings.namespace)  # fmt: skip
    except ChangelogSetupError as exc:
        raise fail(f"worker changelogs: {exc}") from None


def _worker_pipeline(settings: Any, ref: str, uci: bool) -> Any:
    """The pipeline the worker runs: the built-in fraud pipeline (windows and attrs from
    the settings) or the one ``--pipeline`` names (app/pipeline/load.py)."""
    from app.cli_support import fail
    from app.pipeline.load import PipelineError, is_builtin, load_pipeline
    from app.stream.processor import fraud_pipeline_of
    from app.stream.spec import feature_spec

    if is_builtin(ref):
        return fraud_pipeline_of(feature_spec(settings, uci=uci), len(settings.silo_ids))
    try:
        return load_pipeline(ref)
    except PipelineError as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer, settings_from: Any) -> None:
    """Attach the stream commands to the main CLI."""

    @app.command("worker")
    def worker(
        ctx: typer.Context,
        worker_id: Annotated[
            str, typer.Option(help="Name of this worker; each worker on a host needs its own.")
        ] = "0",
        store: Annotated[
            str, typer.Option(help="Table store: rocksdb:// (durable, via rocksdict) or memory://.")
        ] = "rocksdb://",
        batch_rows: Annotated[int | None, typer.Option(help="Rows per micro-batch.")] = None,
        batch_ms: Annotated[int | None, typer.Option(help="Max age of a micro-batch, ms.")] = None,
        loglevel: Annotated[str, typer.Option(help="Faust's own log level.")] = "warn",
        metrics_port: Annotated[
            int | None,
            typer.Option(
                help="Serve Prometheus /metrics here (0 = off) [env FEDSTREAM_METRICS_PORT]."
            ),
        ] = None,
        uci: Annotated[
            bool,
            typer.Option(help="Add the UCI credit-card attrs as txn./profile. features."),
        ] = False,
        pipeline: Annotated[
            str,
            typer.Option(
                envvar="FEDSTREAM_PIPELINE",
                help="The pipeline to run: fraud (built in), package.module[:attr] or "
                "file.py[:attr] (app/pipeline/load.py).",
            ),
        ] = "fraud",
    ) -> None:
        """Run a stream worker: validate, join in windows, vectorise, emit per-silo batches.

        Start several (each with its own --worker-id) to share the input partitions; table
        state moves with the partitions through the changelog topics.
        """
        import asyncio

        _use_uvloop()  # before anything asks asyncio for a loop
        from app.cli_support import require_broker

        settings = settings_from(
            ctx, batch_rows=batch_rows, batch_ms=batch_ms, metrics_port=metrics_port
        )
        require_broker(settings)  # before Faust's imports; aiokafka would retry forever
        _ensure_changelogs(settings)
        from faust.worker import Worker

        from app.cli_support import fail
        from app.stream.gc_pauses import settle_after_startup
        from app.stream.worker import create_worker_app

        chosen = _worker_pipeline(settings, pipeline, uci)
        try:
            handle = create_worker_app(settings, chosen, store=store, worker_id=worker_id)
        except ValueError as exc:  # e.g. the pipeline routes to another number of silos
            raise fail(str(exc)) from None
        spec = handle.processor.spec
        logger.info(
            "worker %s: pipeline %s (%s), spec %s, %d features, silos %s, broker %s, "
            "namespace %r, event loop %s",
            worker_id, chosen.name, pipeline, spec.version, spec.n_features,
            settings.silo_ids, settings.bootstrap, settings.namespace,
            type(asyncio.get_event_loop_policy()).__module__.split(".")[0],
        )  # fmt: skip
        from app.ops.metrics import serve

        serve(settings.metrics_port, f"worker {worker_id}")
        worker = Worker(handle.app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                        logging_config=_logging_config(loglevel))  # fmt: skip
        worker.spinner = None  # its setup put --loglevel back on the handler (and spins in logs)
        settle_after_startup(worker)  # full GC off the chat path (app.stream.gc_pauses)
        # Faust's consumer thread, the chat reader and the event loop hand every record
        # over through the GIL; a short switch interval (Python: 5 ms) shortens the waits
        # of a thread woken by I/O while the loop runs. bench chat on a quiet 2-core box,
        # 4 legs per mode: pooled p50 / p99 2.04 / 18.6 ms at 1 ms, 1.31 / 10.1 ms at
        # 0.2 ms (insecure; secure 2.55 / 19.1 -> 1.61 / 11.1 ms), worker CPU per event
        # no higher. (1 ms against 5 ms, earlier: p99 45-54 vs 51-165 ms, noisy box.)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        worker.execute_from_commandline()

    @app.command("tail")
    def tail(
        ctx: typer.Context,
        topic: Annotated[str, typer.Argument(help="Topic to print, e.g. silo.0.batches.")],
        from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record.")] = True,
        limit: Annotated[int, typer.Option(help="Stop after N records (0 = follow forever).")] = 0,
        rows: Annotated[int, typer.Option(help="Rows to show of each frame.")] = 3,
    ) -> None:
        """Print a topic's records readably: JSON pretty-printed, frames summarised.

        Ends with an error (exit 1) when the broker is unreachable or the topic does not
        exist, instead of waiting for records that cannot come.
        """
        from confluent_kafka import KafkaError

        from app.cli_support import fail, require_broker
        from app.kafka.clients import make_consumer
        from app.stream.render import render_record

        settings = settings_from(ctx)
        require_broker(settings)
        consumer = make_consumer(
            settings.bootstrap,
            f"fedstream-tail-{int(time.time())}",
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
        try:
            meta = consumer.list_topics(topic, timeout=settings.connect_timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                raise fail(f"topic {topic} does not exist on {settings.bootstrap}")
            consumer.subscribe([topic])
            stop = {"now": False}
            signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
            seen = 0
            while not stop["now"] and (limit == 0 or seen < limit):
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.fatal() or err.code() in (
                        KafkaError._ALL_BROKERS_DOWN,
                        KafkaError.UNKNOWN_TOPIC_OR_PART,
                    ):
                        raise fail(f"tail {topic} on {settings.bootstrap}: {err.str()}")
                    typer.echo(f"warning: {err.str()}", err=True)
                    continue
                seen += 1
                typer.echo(render_record(msg.topic(), msg.partition(), msg.offset(),
                                         msg.key(), msg.value(), rows))  # fmt: skip
        finally:
            consumer.close()
