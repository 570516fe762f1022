"""Run the whole loop locally: broker, topics, worker, Flower, synthetic bank, chatbot, report.

Every process the demo starts is stopped in a ``finally`` block, in reverse order, also on
Ctrl-C or SIGTERM: the producer thread, the Flower deployment (``app.fl.processes.down``),
the worker (SIGTERM, then SIGKILL after a grace period) and the broker, if the demo
started it. Each run uses a fresh model name (``demo-<timestamp>``), so federated training
starts from scratch and its consumer groups read only this run's batches. While it runs,
the worker is supervised as ``fl up`` supervises its SuperNodes (app.supervise.Supervised:
restarted with backoff, each restart printed and logged, its liveness in the live view).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from app.demo.monitor import Monitor, Snapshot
from app.demo.view import render_snapshot
from app.settings import Settings
from app.supervise import Supervised

__all__ = [
    "DemoOptions",
    "Running",
    "keep_worker_alive",
    "run_demo",
    "start_worker",
    "stop_services",
]

logger = logging.getLogger(__name__)

FEDSTREAM = Path(sys.executable).with_name("fedstream")
QUESTIONS = (
    "What is the fraud risk of this customer right now?",
    "How much did they spend recently?",
    "Who is this customer?",
)


@dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs (see ``fedstream demo --help``)."""

    duration_s: float = 150.0
    rounds: int = 12
    rate: float = 600.0
    customers: int = 2000
    seed: int = 0
    questions: int = 3
    batch_rows: int = 256
    batch_ms: int = 1000
    max_rows_per_round: int = 5000
    min_rows_per_round: int = 32
    round_rows: int = 2000
    preset: str = "realistic"
    fresh_broker: bool = True
    live: bool = True
    pipeline: str = "fraud"
    """What the worker runs (app/pipeline/load.py); Flower trains on its spec."""


@dataclass
class Running:
    """What the demo started; :func:`stop_services` and ``_shutdown`` stop it."""

    broker: Any = None
    worker: Supervised | None = None
    fl_root: Path | None = None
    producer: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _start_broker(
    settings: Settings, root: Path, options: DemoOptions, console: Console, running: Running
) -> None:
    from app.kafka.broker import LocalBroker
    from app.kafka.principals import ADMIN, principal_names
    from app.kafka.security import use

    if settings.bootstrap_servers:
        console.print(f"using the Kafka cluster at {settings.bootstrap_servers}")
        return
    broker = LocalBroker(
        root,
        settings.cache_dir,
        port=settings.kafka_port,
        controller_port=settings.controller_port,
        version=settings.kafka_version,
        heap=settings.kafka_heap,
        secure=not settings.kafka_insecure,
        principals=principal_names(settings.silo_ids, settings.chat_tenants),
    )
    # the demo acts as its broker's admin; the worker (--data-dir) finds its own principal
    use(broker.identity(ADMIN))
    if options.fresh_broker and broker.pid() is None and broker.home.exists():
        shutil.rmtree(broker.home)
    cached = (broker.libs / ".complete").exists()
    console.print(f"starting Kafka {broker.version} on {broker.bootstrap}"
                  + ("" if cached else " (first run: downloading its jars)"))  # fmt: skip
    if broker.pid() is not None:
        console.print("the demo's broker is already running; using it")
        return
    running.broker = broker  # from here on, the finally block stops it (also on Ctrl-C)
    _started, seconds = broker.start(timeout_s=300)
    console.print(f"Kafka started in {seconds:.1f} s")


def start_worker(settings: Settings, root: Path, options: DemoOptions, model: str) -> Supervised:
    log = (root / "logs").joinpath("worker.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(FEDSTREAM),
        "--bootstrap",
        settings.bootstrap,
        "--silos",
        str(settings.silos),
        "--data-dir",
        str(root),
        "--log-level",
        "WARNING",
        "worker",
        "--store",
        "memory://",
        "--batch-rows",
        str(options.batch_rows),
        "--batch-ms",
        str(options.batch_ms),
        "--pipeline",
        options.pipeline,
    ]
    env = {**os.environ, "FEDSTREAM_MODEL_NAME": model, "FEDSTREAM_NAMESPACE": settings.namespace}
    worker = Supervised("worker", lambda: cmd, log, env)  # restarted by keep_worker_alive
    worker.start()
    return worker


def keep_worker_alive(worker: Supervised, console: Console) -> bool:
    """Restart the worker if it died, after its backoff (app.supervise: 1 s doubling to
    30 s, logged); the demo calls it every second. True if it restarted the worker now."""
    if not worker.check():
        return False
    console.print(
        f"the worker died (exit {worker.last_exit}); restarted it (pid {worker.pid}, "
        f"restart {worker.restarts}; log in {worker.log})"
    )
    return True


def _producer(settings: Settings, options: DemoOptions, running: Running) -> threading.Thread:
    from app.kafka.clients import make_producer
    from app.kafka.principals import BANK
    from app.kafka.security import acting_as, current, read_client_config, sibling
    from app.produce.sender import send_events
    from app.produce.synthetic import SyntheticBank

    bank = SyntheticBank(
        customers=options.customers, silos=settings.silos, seed=options.seed, preset=options.preset
    )

    def events() -> Iterator[Any]:
        for event in bank.events():
            if running.stop.is_set():
                return
            yield event

    def sent(_event: Any) -> None:
        running.sent += 1

    bank_file = sibling(BANK)
    bank_identity = read_client_config(bank_file) if bank_file else current()

    def run() -> None:
        try:
            with acting_as(bank_identity):  # the synthetic bank writes only the inputs
                producer = make_producer(settings.bootstrap)
            send_events(
                producer,
                events(),
                rate=options.rate,
                progress=False,
                on_sent=sent,
            )
        except Exception:
            logger.exception("the synthetic bank stopped")

    thread = threading.Thread(target=run, name="synthetic-bank", daemon=True)
    thread.start()
    return thread


def _stop_producer(running: Running) -> None:
    running.stop.set()
    if running.producer is not None:
        running.producer.join(30)
        running.producer = None


def stop_services(running: Running, console: Console) -> None:
    """Stop the producer, Flower and the worker (idempotent)."""
    _stop_producer(running)
    if running.fl_root is not None:
        from app.fl.processes import down

        console.print("stopping Flower")
        down(running.fl_root)
        running.fl_root = None
    if running.worker is not None:
        console.print(f"stopping the worker: {running.worker.describe()}")
        running.worker.stop(timeout_s=20.0)
        running.worker = None


def _shutdown(running: Running, console: Console) -> None:
    stop_services(running, console)
    if running.broker is not None:
        console.print("stopping Kafka")
        running.broker.stop()
        running.broker = None


def _ask(settings: Settings, options: DemoOptions, console: Console) -> list[dict[str, Any]]:
    from app.kafka.principals import tenant_principal
    from app.kafka.security import acting_as, current, read_client_config, sibling
    from app.produce.synthetic import SyntheticBank
    from app.stream.ask import ChatClient
    from app.stream.chat_cli import format_reply

    ids = SyntheticBank(customers=options.customers, silos=settings.silos, seed=options.seed).ids
    chats = []
    tenant_file = sibling(tenant_principal(settings.tenant))  # the operator's chatbot tenant
    with acting_as(read_client_config(tenant_file) if tenant_file else current()):
        client = ChatClient(settings.bootstrap, tenant=settings.tenant)
    with client:
        for i in range(options.questions):
            cid = ids[(i * 7919 + 11) % len(ids)]
            question = QUESTIONS[i % len(QUESTIONS)]
            reply = client.ask(cid, question, timeout_s=15)
            console.print(f"[bold]you[/] about {cid}: {escape(question)}")
            if reply is None:
                console.print("[red]no answer within 15 s[/]")
                continue
            # escaped: Rich read the reply's "[ok]" as markup and dropped it
            console.print(
                f"[bold]fedstream[/]: {escape(format_reply(reply.doc, reply.latency_s))}\n"
            )
            chats.append(
                {
                    "customer_id": cid,
                    "question": question,
                    "answer": reply.doc.get("answer", ""),
                    "latency_ms": reply.latency_s * 1000,
                }
            )
    return chats


def _watch(monitor: Monitor, running: Running, options: DemoOptions, console: Console) -> Snapshot:
    from rich.live import Live

    deadline = time.monotonic() + options.duration_s
    snap = monitor.snapshot()
    live = options.live and console.is_terminal
    last_print = 0.0
    with (
        Live(render_snapshot(snap, options), console=console, refresh_per_second=2, transient=False)
        if live
        else _NullLive() as view
    ):
        while time.monotonic() < deadline and (not options.rounds or snap.round < options.rounds):
            if running.worker is not None:
                keep_worker_alive(running.worker, console)
            time.sleep(1.0)
            snap = monitor.snapshot()
            worker = running.worker.describe() if running.worker is not None else None
            if live:
                view.update(render_snapshot(snap, options, worker))
            elif time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                console.print(
                    f"{snap.elapsed_s:5.0f} s: {snap.enriched:,} events processed "
                    f"({snap.enriched_per_s:,.0f}/s), round {snap.round}, batches {snap.batches}"
                    f", worker {worker}"
                )
    return snap


class _NullLive:
    def __enter__(self) -> _NullLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: Any) -> None:
        return None


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> Path:
    """Run the demo; returns the report directory."""
    from app.demo.finish import write_report
    from app.fl.kafka_io import silo_group
    from app.fl.processes import up
    from app.fl.spec_source import pipeline_document
    from app.kafka.admin import apply_catalogue, make_admin
    from app.kafka.provision import provision
    from topics import catalogue

    settings = settings.model_copy(update={"namespace": ""})
    root = Path(settings.data_dir) / "demo"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = f"demo-{stamp}"
    report_dir = Path(settings.data_dir) / "reports" / stamp
    running = Running()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    t_start = time.monotonic()
    run_config = {
        "model-name": model,
        "max-rows-per-round": options.max_rows_per_round,
        "min-rows": options.min_rows_per_round,
        "round-rows": options.round_rows,
        "idle-backoff-max": 4.0,
        "round-timeout": 60.0,
    }
    spec = pipeline_document(options.pipeline, settings)  # what the worker will publish
    run_config.update({"spec-version": spec["version"], "n-features": spec["n_features"]})
    interrupted = False
    try:
        _start_broker(settings, root, options, console, running)
        apply_catalogue(
            make_admin(settings.bootstrap),
            catalogue(
                settings.silo_ids, settings.input_partitions, operators=settings.operator_names
            ),
        )
        # every component's principal and ACLs (a no-op on an insecure broker)
        provision(settings.bootstrap, "", settings.silo_ids, settings.chat_tenants,
                  {s: silo_group(model, s) for s in settings.silo_ids},
                  prune=("stream", "fl"))  # fmt: skip
        running.worker = start_worker(settings, root, options, model)
        console.print(
            f"worker started (pid {running.worker.pid}); starting Flower with "
            f"{settings.silos} SuperNodes"
        )
        running.fl_root = root
        up(
            data_dir=root,
            bootstrap=settings.bootstrap,
            silo_ids=settings.silo_ids,
            superlink_port=settings.superlink_port,
            supernode_base_port=settings.supernode_base_port,
            run_config=run_config,
        )
        monitor = Monitor(settings.bootstrap, settings.silo_ids, model)
        running.producer = _producer(settings, options, running)
        console.print(
            f"synthetic bank: {options.customers:,} customers at {options.rate:,.0f} "
            f"events/s; running for {options.duration_s:.0f} s or "
            f"{options.rounds} rounds"
        )
        try:
            snap = _watch(monitor, running, options, console)
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted: writing the report of what ran so far[/]")
            snap = monitor.snapshot()
        streamed_s = snap.elapsed_s
        sent = running.sent
        _stop_producer(running)
        chats = _ask(settings, options, console) if not interrupted else []
        rounds = monitor.snapshot().rounds  # rounds that finished meanwhile count too
        monitor.close()
        stop_services(running, console)
        summary = {
            "model name": model,
            "silos": settings.silos,
            "streaming seconds": round(streamed_s, 1),
            "events sent while streaming": sent,
            "transactions enriched while streaming": snap.enriched,
            "mean enriched events/s": snap.enriched / max(streamed_s, 1e-9),
            "rounds": len(rounds),
            "options": asdict(options),
        }
        return write_report(
            report_dir,
            settings,
            run_config,
            summary,
            rounds,
            chats,
            console,
            time.monotonic() - t_start,
        )
    finally:
        try:
            _shutdown(running, console)
        finally:
            signal.signal(signal.SIGTERM, previous)
