"""``fedstream bench stream``: events/s through one stream worker versus a plain passthrough.

Phases, all in a fresh topic namespace on the configured broker (a temporary local broker
is started when none answers):

1. **Backlog.** ``events`` synthetic events are produced first; then ONE ``fedstream
   worker`` subprocess drains them. Sustained rate = rows of every frame but the first
   one / (created_ms of the last frame - created_ms of the first frame): from the moment
   the first batch is out (the worker is up, recovered and consuming) to the last batch
   produced, read from the frames' own metadata.
2. **Ceiling.** A plain confluent-kafka loop (consume in batches of 1,000, produce each
   record to another topic, flush) over the same input: first record consumed to last
   record delivered.
3. **Latency.** With the worker running idle, ``latency_events`` more events are produced
   at half the measured worker rate (at least 500/s), or at ``--latency-rate`` events/s
   when given: the same pace for every leg, so that ``--against`` compares latency like
   for like (two workers with different backlog rates are otherwise paced differently).
   Latency of a row = Kafka timestamp of its frame record (set when the worker hands the
   frame to its producer) minus the producer-side send time of its event, matched by event
   time ``ts`` (a few synthetic events share a ``ts`` to the millisecond; the last one sent
   wins, which can only shorten a latency by the time between them). Includes
   micro-batching (``--batch-ms``).

Each leg also reports the worker's own CPU time per event over the same span
(``worker_cpu_us_per_event``, :mod:`bench.cpu`): on a shared box it varies far less than
the wall-clock rate.

With ``--against REV`` the same measurement runs with the worker of git revision ``REV``
and with this checkout's, in ABBA order on the same broker and the same synthetic events
(seeded): a like-for-like comparison (:mod:`bench.against`).

With ``--profile`` the worker runs under py-spy (``py-spy record --format raw``) during
the backlog phase and the functions with the most samples are printed.

The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from bench.cpu import CpuSampler
from bench.options import BROKER_PER_LEG_HELP

__all__ = ["bench_stream_command", "run_bench"]

logger = logging.getLogger(__name__)

TARGETS = {"worker_events_per_s": 50_000.0, "ratio": 0.5}


def _py_spy() -> str:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy") or "py-spy"


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    arr = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (50, 90, 99)} | {
        "max": round(float(arr.max()), 1)
    }


def _encoded(events: Any, ns: str) -> list[tuple[str, bytes, bytes, float]]:
    import orjson

    from topics import CUSTOMERS, TRANSACTIONS, namespaced

    topic = {"customer": namespaced(CUSTOMERS, ns), "transaction": namespaced(TRANSACTIONS, ns)}
    return [(topic[k], key.encode(), orjson.dumps(v), float(v["ts"])) for k, key, v in events]


def _frames(bootstrap: str, ns: str, silos: int) -> list[tuple[int, int, int, Any]]:
    """``(created_ms, kafka_ts_ms, rows, ts array)`` of every frame of every silo."""
    from app.features.frames import decode_batch
    from app.stream.harness import read_topic
    from topics import namespaced, silo_batches

    out = []
    for silo in range(silos):
        for rec in read_topic(bootstrap, namespaced(silo_batches(silo), ns)):
            frame = decode_batch(rec.value)
            out.append((frame.meta.created_ms, rec.timestamp_ms, frame.meta.rows, frame.ts))
    return sorted(out, key=lambda f: f[0])


def passthrough(bootstrap: str, ns: str, n: int) -> dict[str, float]:
    """Consume the ``n`` input records and produce each one again; the Python ceiling."""
    from app.kafka.clients import delivery_errors, make_consumer, make_producer
    from app.stream.harness import create_topics
    from topics import CUSTOMERS, TRANSACTIONS, namespaced, silo_batches

    out_ns = f"{ns}-pt"
    create_topics(bootstrap, [0], 4, out_ns)
    out_topic = namespaced(silo_batches(0), out_ns)
    consumer = make_consumer(bootstrap, f"{ns}-passthrough", **{"fetch.min.bytes": 1})
    consumer.subscribe([namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)])
    producer = make_producer(bootstrap, **{"enable.idempotence": False})
    errors = delivery_errors()
    seen = 0
    first = 0.0
    produce = producer.produce
    while seen < n:
        batch = consumer.consume(1000, 1.0)
        if not batch:
            continue
        if not first:
            first = time.perf_counter()
        for msg in batch:
            if msg.error():
                continue
            while True:
                try:
                    produce(out_topic, msg.value(), msg.key(), on_delivery=errors)
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - first
    consumer.close()
    return {"events": seen, "seconds": round(seconds, 3), "events_per_s": round(seen / seconds)}


def _profile_summary(raw: Path, top: int = 15) -> list[tuple[str, float]]:
    """Share of samples per function (inclusive) from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("/")[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        for f in set(frames):
            inclusive[f] += n
        leaf[frames[-1]] += n
    print(f"py-spy: {total} samples; leaf (self) share:")
    for f, n in leaf.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("inclusive share:")
    for f, n in inclusive.most_common(top * 2):
        print(f"  {100 * n / total:5.1f}%  {f}")
    return [(f, round(100 * n / total, 1)) for f, n in leaf.most_common(top)]


def run_bench(bootstrap: str, **knobs: Any) -> dict[str, Any]:
    """The measurement (see the module docstring) in a fresh namespace, deleted afterwards."""
    from app.kafka.admin import delete_topics, make_admin

    ns = f"bench{uuid.uuid4().hex[:8]}"
    try:
        return _measure(bootstrap, ns, **knobs)
    finally:
        admin = make_admin(bootstrap)  # inputs, frames, changelogs, and the passthrough's
        deleted = delete_topics(admin, prefix=f"{ns}.") + delete_topics(admin, prefix=f"{ns}-pt.")
        print(f"deleted the {deleted} topics of namespace {ns}")


def _measure(
    bootstrap: str,
    ns: str,
    events: int,
    customers: int,
    silos: int,
    batch_rows: int,
    batch_ms: int,
    latency_events: int,
    profile: bool,
    work_dir: Path,
    latency_rate: float = 0.0,
    pipeline: str = "fraud",
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from app.produce import SyntheticBank
    from app.stream.harness import (
        WorkerProcess,
        create_topics,
        produce_records,
        wait_committed,
        worker_group,
    )
    from topics import CUSTOMERS, TRANSACTIONS, namespaced

    create_topics(bootstrap, list(range(silos)), 4, ns)
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    bank = SyntheticBank(customers=customers, silos=silos, seed=1)
    t = time.perf_counter()
    all_events = _encoded(bank.events(n_events=events + latency_events), ns)
    backlog, later = all_events[:events], all_events[events:]
    print(f"generated {len(all_events):,} events in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    produce_records(bootstrap, ((tp, k, v) for tp, k, v, _ts in backlog))
    print(f"produced the backlog of {events:,} events in {time.perf_counter() - t:.1f} s")
    n_txn = sum(1 for tp, *_ in backlog if tp == inputs[1])
    if n_txn == 0:  # the synthetic bank opens every customer before the first transaction
        raise typer.BadParameter(
            f"the backlog of {events:,} events has no transaction: "
            f"use more --events than --customers ({customers:,})"
        )

    # 1. backlog through one worker
    args = ["--batch-rows", str(batch_rows), "--batch-ms", str(batch_ms), "--pipeline", pipeline]
    worker = WorkerProcess(bootstrap, ns, work_dir, silos, "bench", args, env=worker_env).start()
    spy: subprocess.Popen[bytes] | None = None
    raw_profile = work_dir / "worker.pyspy.txt"
    try:
        if profile:
            time.sleep(4.0)  # past the imports, into consuming
            spy = subprocess.Popen(
                [_py_spy(), "record", "--format", "raw",
                 "-r", "200", "-o", str(raw_profile), "--pid", str(worker.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        t = time.perf_counter()
        with CpuSampler(worker.pid) as cpu:  # the worker's own CPU time (bench.cpu)
            wait_committed(bootstrap, worker_group(ns), inputs, timeout_s=1800, worker=worker)
        drain_s = time.perf_counter() - t
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        frames = _frames(bootstrap, ns, silos)
        if not frames:
            raise RuntimeError(f"the worker wrote no frame; see {worker.log_path}")
        rows = sum(f[2] for f in frames)
        span_ms = frames[-1][0] - frames[0][0]
        sustained = (rows - frames[0][2]) / (span_ms / 1000.0) if span_ms > 0 else 0.0
        span_cpu = cpu.between(frames[0][0], frames[-1][0])
        span_main = cpu.between(frames[0][0], frames[-1][0], main=True)
        span_rows = rows - frames[0][2]
        cpu_us = span_cpu / span_rows * 1e6 if span_cpu and span_rows > 0 else None
        main_us = span_main / span_rows * 1e6 if span_main and span_rows > 0 else None
        print(f"worker: {rows:,} rows of {n_txn:,} transactions in {len(frames)} frames; "
              f"{sustained:,.0f} events/s sustained (first to last frame: {span_ms / 1000:.1f} s; "
              f"start to all committed {drain_s:.1f} s); worker CPU "
              f"{'?' if cpu_us is None else f'{cpu_us:.0f}'} us per event (main thread "
              f"{'?' if main_us is None else f'{main_us:.0f}'} us)")  # fmt: skip

        # 3. latency at half the worker's rate (or --latency-rate), worker idle and warm
        sent_ms: dict[float, float] = {}
        lat: list[float] = []
        rate = latency_rate if latency_rate > 0 else max(500.0, sustained / 2)
        if later:
            from app.kafka.clients import make_producer

            producer = make_producer(bootstrap, **{"linger.ms": 1})
            start = time.perf_counter()
            for i, (tp, k, v, ts) in enumerate(later):
                due = start + i / rate
                while (left := due - time.perf_counter()) > 0:
                    time.sleep(min(left, 0.005))
                sent_ms[ts] = time.time() * 1000.0
                producer.produce(tp, v, k)
                producer.poll(0)
            producer.flush(60)
            wait_committed(bootstrap, worker_group(ns), inputs, timeout_s=600, worker=worker)
            for _created, kafka_ms, _n, ts_arr in _frames(bootstrap, ns, silos):
                for ts in ts_arr.tolist():
                    if ts in sent_ms:
                        lat.append(kafka_ms - sent_ms[ts])
            print(f"latency at {rate:,.0f} events/s over {len(lat):,} rows (ms): "
                  f"{_percentiles(lat)}")  # fmt: skip
        worker.stop(signal.SIGTERM)
    finally:
        worker.stop(signal.SIGKILL, 5)
        if spy is not None and spy.poll() is None:
            spy.kill()

    # 2. the ceiling
    pt = passthrough(bootstrap, ns, events)
    print(f"passthrough: {pt['events']:,} events in {pt['seconds']} s = "
          f"{pt['events_per_s']:,} events/s")  # fmt: skip
    top = _profile_summary(raw_profile) if profile and raw_profile.exists() else []
    ratio = sustained / pt["events_per_s"] if pt["events_per_s"] else 0.0
    return {
        "pipeline": pipeline,
        "events": events,
        "transactions": n_txn,
        "customers": customers,
        "silos": silos,
        "batch_rows": batch_rows,
        "batch_ms": batch_ms,
        "worker_events_per_s": round(sustained),
        "worker_frames": len(frames),
        "worker_drain_s": round(drain_s, 2),
        "worker_cpu_us_per_event": None if cpu_us is None else round(cpu_us, 1),
        "worker_main_thread_cpu_us_per_event": None if main_us is None else round(main_us, 1),
        "passthrough_events_per_s": pt["events_per_s"],
        "ratio": round(ratio, 3),
        "latency_ms": _percentiles(lat),
        "latency_rate_events_per_s": round(rate) if later else None,
        "targets": TARGETS,
        "target_met": sustained >= TARGETS["worker_events_per_s"] and ratio >= TARGETS["ratio"],
        "profile_top_self": top,
    }


def bench_stream_command(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(help="Synthetic events in the backlog.")] = 200_000,
    customers: Annotated[int, typer.Option(help="Synthetic customers.")] = 5_000,
    batch_rows: Annotated[int, typer.Option(help="Rows per micro-batch.")] = 512,
    batch_ms: Annotated[int, typer.Option(help="Max age of a micro-batch, ms.")] = 2000,
    latency_events: Annotated[
        int, typer.Option(help="Events sent paced for the latency phase (0 = skip).")
    ] = 20_000,
    latency_rate: Annotated[
        float,
        typer.Option(
            help="Pace of the latency phase, events/s (0 = half the leg's backlog rate, at "
            "least 500): fix it to compare latency between legs or revisions."
        ),
    ] = 0.0,
    profile: Annotated[bool, typer.Option(help="Profile the worker with py-spy.")] = False,
    pipeline: Annotated[
        str,
        typer.Option(
            help="What the worker runs: fraud (the built-in pipeline, app/pipelines/fraud.py) "
            "or a pipeline module/file (app/pipeline/load.py)."
        ),
    ] = "fraud",
    security: Annotated[
        str,
        typer.Option(
            help="both: measure on an insecure and a secure temporary broker and compare; "
            "current: only on the configured broker (or a temporary secure one)."
        ),
    ] = "both",
    repeats: Annotated[
        int, typer.Option(min=1, help="--security both: measured legs per mode (interleaved).")
    ] = 2,
    warmup: Annotated[
        bool, typer.Option(help="--security both: one leg per mode first, not compared.")
    ] = False,
    broker_per_leg: Annotated[bool, typer.Option(help=BROKER_PER_LEG_HELP)] = False,
    against: Annotated[
        str | None,
        typer.Option(
            help="Also run the worker of this git revision (e.g. HEAD~1), alternating, on "
            "the same broker and events; implies --security current."
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of --against (reference, this).")] = 1,
) -> None:
    """Events/s through one stream worker vs a confluent-kafka passthrough; latency."""
    import orjson

    from app.kafka.broker import BrokerError, LocalBroker, wait_for_broker
    from app.kafka.security import use
    from app.ports import free_port
    from app.settings import Settings

    settings = Settings(**dict(ctx.obj or {}))
    knobs = {"events": events, "customers": customers, "silos": settings.silos,
             "batch_rows": batch_rows, "batch_ms": batch_ms, "latency_events": latency_events,
             "latency_rate": latency_rate, "profile": profile, "pipeline": pipeline}  # fmt: skip
    if against is not None:
        security = "current"
    if security == "both" and not settings.bootstrap_servers:  # --bootstrap: that cluster
        from bench.security import compare_security

        def measure(bootstrap: str, _secure: bool) -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="fedstream-bench-") as tmp:
                return run_bench(bootstrap, work_dir=Path(tmp), **knobs)

        figures = {"worker_events_per_s": True, "passthrough_events_per_s": True,
                   "latency_ms.p50": False, "latency_ms.p99": False,
                   "worker_cpu_us_per_event": False}  # fmt: skip
        doc = compare_security(
            measure, settings.cache_dir, figures, settings.silos, repeats, warmup, broker_per_leg
        )
        print(f"security cost (fraction of each figure, medians of {repeats} legs per mode): "
              f"{doc['security_cost']}; paired: {doc['paired_cost']}; "
              f"target <= {doc['security_target']}: "
              f"{'met' if doc['security_target_met'] else 'NOT met'}")  # fmt: skip
        print(orjson.dumps(doc).decode())
        return
    with tempfile.TemporaryDirectory(prefix="fedstream-bench-") as tmp:
        work = Path(tmp)
        bootstrap = settings.bootstrap
        broker: LocalBroker | None = None
        try:
            wait_for_broker(bootstrap, timeout_s=3)
        except BrokerError:
            broker = LocalBroker(
                work, settings.cache_dir, port=free_port(), controller_port=free_port()
            )
            broker.start(timeout_s=180)
            bootstrap = broker.bootstrap
            os.environ["FEDSTREAM_KAFKA_CLIENTS"] = str(broker.clients_dir)  # for the worker
            use(broker.identity())  # as its admin
            print(f"started a temporary (secure) broker on {bootstrap}")
        try:
            if against is not None:
                from bench.against import compare_revisions

                doc = compare_revisions(partial(run_bench, bootstrap), against, rounds, work,
                                        **knobs)  # fmt: skip
                print(f"this worker {doc['this_events_per_s']} events/s, {against}'s "
                      f"{doc['reference_events_per_s']}: {doc['vs_reference']}x (pairs "
                      f"{doc['paired_vs_reference']}); CPU per event {doc['this_cpu_us_per_event']}"
                      f" vs {doc['reference_cpu_us_per_event']} us: {doc['cpu_vs_reference']}x; "
                      f"target >= 1.0: {'met' if doc['target_met'] else 'NOT met'}")  # fmt: skip
                print(orjson.dumps(doc).decode())
                return
            result = run_bench(
                bootstrap,
                events=events,
                customers=customers,
                silos=settings.silos,
                batch_rows=batch_rows,
                batch_ms=batch_ms,
                latency_events=latency_events,
                latency_rate=latency_rate,
                profile=profile,
                pipeline=pipeline,
                work_dir=work,
            )
        finally:
            if broker is not None:
                broker.stop()
    print(f"worker {result['worker_events_per_s']:,} events/s, passthrough "
          f"{result['passthrough_events_per_s']:,} events/s, ratio {result['ratio']}; "
          f"target {TARGETS['worker_events_per_s']:,.0f} events/s and ratio "
          f"{TARGETS['ratio']}: {'met' if result['target_met'] else 'NOT met'}")  # fmt: skip
    print(orjson.dumps(result).decode())
