"""``fedstream bench chat``: chatbot latency under stream load, and its cost to the stream.

On the configured broker, in a fresh topic namespace, with a real ``fedstream worker``
process and a published global model (so every event is scored and every answer is
explained):

0. warm-up: the load runs until the worker keeps up with it (its enriched rate within
   15 % of the input rate in two windows of 2 s in a row, not catching up a backlog),
   at least 10 s; ``warmup_s`` says how long that took. A fixed 10 s was not enough on a
   loaded box: the worker was still reading the profiles and catching up when the
   phases began (0 enriched/s "without chat", then chat replies queued behind the
   catch-up), more often for the secure broker, whose worker starts slower;
1. the synthetic bank sends transactions at a steady ``rate`` for ``seconds``: the
   stream's throughput (enriched records/s) *without* chatbot load;
2. the same load plus chatbot requests at ``chat_rate`` for ``seconds``: throughput
   *with* chatbot load and the reply latency (request produced -> reply consumed); the
   requests of the first ``CHAT_WARMUP_S`` are a warm-up, reported apart
   (``chat_warmup_ms``: first-use costs, once per client and worker), and this process
   collects no garbage while the measured requests run (its own pauses are not replies');
3. event-to-enriched latency percentiles over both phases (``enriched_ms`` minus the
   input record's Kafka timestamp);
4. each reply's latency in two halves (``chat_to_worker_ms``: request produced -> reply
   produced, two broker hops plus the worker's answer; ``chat_from_worker_ms``: reply
   produced -> received, two broker hops), from the reply's Kafka CreateTime (ms
   resolution), per leg and pooled (``pooled.halves``): which side a cost is on;
5. the worker process's CPU time per 1,000 enriched events over both phases
   (``worker_cpu_ms_per_1k``): what its work costs whatever else runs on the box, where
   latencies on a loaded box mostly say how long it waited for a core.

Targets: chatbot p99 <= 50 ms at 200 requests/s; throughput drop <= 10 %. The last output
line is one JSON object with the figures.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from confluent_kafka import TopicPartition

from app.demo.report import latency_percentiles
from app.features.spec import FeatureSpec
from app.kafka.admin import delete_topics, make_admin
from app.kafka.clients import make_consumer, make_producer, produce_when_room
from app.model.config import ModelConfig
from app.model.standardize import MomentStats
from app.produce.sender import TokenBucket
from app.produce.synthetic import SyntheticBank
from app.settings import Settings
from app.stream.ask import ChatClient, Reply
from app.stream.harness import WorkerProcess, create_topics, produce_records, read_topic
from app.stream.spec import feature_spec
from bench.cpu import process_cpu_s
from bench.options import BROKER_PER_LEG_HELP
from topics import CUSTOMERS, FEATURES_ENRICHED, MODEL_GLOBAL, TRANSACTIONS, namespaced

__all__ = ["bench_chat_command", "pooled_latencies", "run_bench", "split_latencies"]

logger = logging.getLogger(__name__)

TARGETS = {"chat_p99_ms": 50.0, "throughput_drop_pct": 10.0}


def _publish_model(bootstrap: str, ns: str, settings: Settings, spec: FeatureSpec) -> None:
    from app.fl.model_store import make_model_frame  # JAX: not with `fedstream --help`
    from app.model.params import init_arrays

    config = ModelConfig(n_features=spec.n_features)
    moments = MomentStats.from_rows(np.random.default_rng(0).normal(size=(64, spec.n_features)))
    frame, _version = make_model_frame(
        model_name=settings.model_name, round_=1, arrays=init_arrays(config), config=config,
        spec_version=spec.version, moments=moments, metrics={},
    )  # fmt: skip
    produce_records(
        bootstrap, [(namespaced(MODEL_GLOBAL, ns), settings.model_name.encode(), frame)]
    )


class _Load:
    """Steady transaction load in a thread."""

    def __init__(self, bootstrap: str, ns: str, events: Iterator[Any], rate: float) -> None:
        self.stop = threading.Event()
        self.sent = 0
        topic = namespaced(TRANSACTIONS, ns)

        def run() -> None:
            producer = make_producer(bootstrap, **{"linger.ms": 5})
            bucket = TokenBucket(rate) if rate > 0 else None
            for _kind, key, value in events:
                if self.stop.is_set():
                    break
                if bucket is not None:
                    bucket.take()
                produce_when_room(producer, topic, orjson.dumps(value), key)
                self.sent += 1
                if self.sent % 500 == 0:
                    producer.poll(0)
            producer.flush(30)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _cpu(pid: int) -> float:
    cpu = process_cpu_s(pid)
    if cpu is None:
        raise RuntimeError(f"the worker (pid {pid}) is gone")
    return cpu


class _EnrichedEnd:
    """The end offset of the enriched topic, read by one consumer for the whole leg (a new
    consumer per look made a TLS and SCRAM handshake every 2 s, charged to the broker)."""

    def __init__(self, bootstrap: str, ns: str) -> None:
        self.topic = namespaced(FEATURES_ENRICHED, ns)
        self.consumer = make_consumer(bootstrap, f"bench-chat-{uuid.uuid4().hex[:6]}")
        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self.partitions = [TopicPartition(self.topic, p) for p in meta.partitions]

    def __call__(self) -> int:
        return sum(
            self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self.partitions
        )

    def close(self) -> None:
        self.consumer.close()


def _broker_cpu_now() -> float | None:
    # only a --security both run (bench.security, in this process) acts on a broker it
    # started; a --against leg loads this module beside an older tree and must not import it
    security = sys.modules.get("bench.security")
    return security.broker_cpu_s() if security is not None else None


def _wait_steady(
    enriched_end: _EnrichedEnd, load: _Load, worker: WorkerProcess, rate: float,
    min_s: float = 10.0, timeout_s: float = 300.0, window_s: float = 2.0,
) -> float:  # fmt: skip
    """Wait until the worker keeps up with the load (module docstring, step 0); returns
    the seconds it took."""
    start = time.monotonic()
    steady = 0
    sent, enriched = load.sent, enriched_end()
    while True:
        time.sleep(window_s)
        worker.check_alive()
        sent2, enriched2 = load.sent, enriched_end()
        rate_in = (sent2 - sent) / window_s if rate > 0 else max(sent2 - sent, 1) / window_s
        rate_out = (enriched2 - enriched) / window_s
        sent, enriched = sent2, enriched2
        steady = steady + 1 if enriched and abs(rate_out - rate_in) <= 0.15 * rate_in else 0
        waited = time.monotonic() - start
        if steady >= 2 and waited >= min_s:
            return waited
        if waited > timeout_s:
            raise RuntimeError(f"the worker did not keep up with {rate_in:,.0f} events/s within "
                               f"{timeout_s:.0f} s ({rate_out:,.0f} enriched/s)")  # fmt: skip


CHAT_WARMUP_S = 2.0
"""Chat requests sent (at the measured rate) before the measured chat phase, their replies
reported apart (``chat_warmup_ms``): the first replies of a leg waited for what happens
once per client and worker (first use of the client's connections and of the worker's
reply path; which part of it was not pinned down): 26-73 replies of 20-160 ms at its start
with security on, 8-12 of 20-30 ms without, in one-off probes of single legs."""


def _chat_phase(
    bootstrap: str, ns: str, ids: list[str], chat_rate: float, seconds: float
) -> tuple[list[Reply], int, list[Reply]]:
    """Send requests at ``chat_rate`` for ``CHAT_WARMUP_S``, then for ``seconds``; returns
    the measured replies, the measured sent count and the warm-up's replies."""
    rng = random.Random(0)
    with ChatClient(bootstrap, ns) as client:
        warm, _ = _ask_at_rate(client, ids, rng, chat_rate, CHAT_WARMUP_S)
        # This process's own pauses must not count as reply latency: a full collection
        # here (load generator, chat client and the replies kept) took 89-218 ms.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            replies, sent = _ask_at_rate(client, ids, rng, chat_rate, seconds)
        finally:
            gc.enable()
            gc.unfreeze()
    return replies, sent, warm


def _ask_at_rate(
    client: ChatClient, ids: list[str], rng: random.Random, chat_rate: float, seconds: float
) -> tuple[list[Reply], int]:
    """Requests at ``chat_rate`` for ``seconds``, then up to 10 s for the last replies."""
    replies: list[Reply] = []
    done = threading.Event()
    deadline = time.monotonic() + seconds

    def receive() -> None:
        while not done.is_set() or client.pending:
            replies.extend(client.receive(0.05))
            if done.is_set() and time.monotonic() > deadline + 10:
                break

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    bucket = TokenBucket(chat_rate)
    sent = 0
    while time.monotonic() < deadline:
        bucket.take()
        client.send(rng.choice(ids), "what is the risk?")
        sent += 1
    done.set()
    receiver.join(15)
    return replies, sent


def split_latencies(replies: list[Reply]) -> dict[str, list[float]]:
    """Each reply's latency (ms) whole and in its two halves: ``to_worker`` (request
    produced -> reply produced: two broker hops and the worker's answer) and
    ``from_worker`` (reply produced -> received: two broker hops), from the reply's Kafka
    CreateTime (ms resolution)."""
    out: dict[str, list[float]] = {"total": [], "to_worker": [], "from_worker": []}
    for r in replies:
        out["total"].append(r.latency_s * 1000)
        # an older revision's Reply (bench chat --against) has no from_worker_s
        if (from_worker := getattr(r, "from_worker_s", None)) is not None:
            out["from_worker"].append(from_worker * 1000)
            out["to_worker"].append((r.latency_s - from_worker) * 1000)
    return out


def run_bench(
    settings: Settings, rate: float, chat_rate: float, seconds: float, customers: int,
    samples: dict[str, list[float]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The measurement (see the module docstring) in a fresh namespace, deleted afterwards;
    ``samples`` (if given) receives every reply latency in ms (see split_latencies)."""
    ns = f"benchchat{uuid.uuid4().hex[:6]}"
    create_topics(settings.bootstrap, settings.silo_ids, settings.input_partitions, ns)
    try:
        return _measure(settings, ns, rate, chat_rate, seconds, customers, samples)
    finally:
        # every topic of the namespace: the catalogue and the worker's changelogs
        admin = make_admin(settings.bootstrap)
        delete_topics(admin, prefix=f"{ns}.")
        _revoke_namespace_acls(admin, ns)


def _revoke_namespace_acls(admin: Any, ns: str) -> None:
    """A secure broker kept for many legs gathered every leg's ACLs. Imported here, not at
    the top: ``--against``'s reference arm runs this file beside a tree without Kafka
    security (bench/chat_leg.py)."""
    if importlib.util.find_spec("app.kafka.security") is None:
        return
    from app.kafka.access import revoke_stale
    from app.kafka.principals import in_namespace
    from app.kafka.security import current

    if current().secure:
        revoke_stale(admin, [], lambda grant: in_namespace(grant.name, ns))


def _measure(
    settings: Settings, ns: str, rate: float, chat_rate: float, seconds: float, customers: int,
    samples: dict[str, list[float]] | None,
) -> dict[str, Any]:  # fmt: skip
    bootstrap = settings.bootstrap
    spec = feature_spec(settings)
    bank = SyntheticBank(customers=customers, silos=settings.silos, seed=7)
    events = bank.events()
    profiles = [next(events) for _ in range(customers)]
    produce_records(bootstrap, [(namespaced(CUSTOMERS, ns), k.encode(), orjson.dumps(v))
                                for _kind, k, v in profiles])  # fmt: skip
    _publish_model(bootstrap, ns, settings, spec)
    out: dict[str, Any] = {"rate": rate, "chat_rate": chat_rate, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(
        bootstrap, ns, Path(tmp), silos=settings.silos, args=["--store", "memory://"]
    ) as worker:  # fmt: skip
        enriched_end = _EnrichedEnd(bootstrap, ns)
        load = _Load(bootstrap, ns, events, rate)
        try:
            typer.echo(f"warming up at {rate:,.0f} events/s until the worker keeps up ...")
            out["warmup_s"] = round(_wait_steady(enriched_end, load, worker, rate), 1)
            typer.echo(f"steady after {out['warmup_s']} s")
            measure_from_ms = time.time() * 1000  # latencies of the warm-up are left out
            e0, t0, c0 = enriched_end(), time.monotonic(), _cpu(worker.pid)
            b0 = _broker_cpu_now()
            time.sleep(seconds)
            e1, t1 = enriched_end(), time.monotonic()
            out["stream_eps_without_chat"] = (e1 - e0) / (t1 - t0)
            typer.echo(f"without chat: {out['stream_eps_without_chat']:,.0f} enriched/s")
            replies, sent, warm = _chat_phase(bootstrap, ns, bank.ids, chat_rate, seconds)
            e2, t2, c2 = enriched_end(), time.monotonic(), _cpu(worker.pid)
            b2 = _broker_cpu_now()
            out["stream_eps_with_chat"] = (e2 - e1) / (t2 - t1)
            # the broker over the two measured phases only (the leg's share includes start-up)
            if b0 is not None and b2 is not None:
                out["broker_cpu_share_steady"] = round((b2 - b0) / (t2 - t0), 3)
            # what the worker's work costs, whatever the box's load (both phases)
            out["worker_cpu_ms_per_1k"] = (c2 - c0) * 1e6 / max(e2 - e0, 1)
            out["worker_cpu_share"] = (c2 - c0) / (t2 - t0)
            typer.echo(f"with chat:    {out['stream_eps_with_chat']:,.0f} enriched/s")
        finally:
            load.close()
            enriched_end.close()
        worker.check_alive()
        out["events_sent"] = load.sent
    parts = split_latencies(replies)
    if samples is not None:
        for part, values in parts.items():
            samples.setdefault(part, []).extend(values)
    lat = latency_percentiles(parts["total"])
    out["chat_warmup_ms"] = latency_percentiles([r.latency_s * 1000 for r in warm])
    for part in ("to_worker", "from_worker"):
        out[f"chat_{part}_ms"] = latency_percentiles(parts[part])
    out["chat_sent"], out["chat_replies"] = sent, lat["n"]
    out["chat_p50_ms"], out["chat_p99_ms"], out["chat_max_ms"] = lat["p50"], lat["p99"], lat["max"]
    before, after = out["stream_eps_without_chat"], out["stream_eps_with_chat"]
    out["throughput_drop_pct"] = max(0.0, (before - after) / before * 100) if before else None
    docs = [orjson.loads(r.value) for r in read_topic(bootstrap, namespaced(FEATURES_ENRICHED, ns))]
    out["event_to_enriched_ms"] = latency_percentiles(
        [
            d["enriched_ms"] - d["source_ms"]
            for d in docs
            if d.get("source_ms") and d["source_ms"] >= measure_from_ms
        ]
    )
    out["targets"] = TARGETS
    out["targets_met"] = bool(
        out["chat_p99_ms"] is not None
        and out["chat_p99_ms"] <= TARGETS["chat_p99_ms"]
        and out["chat_replies"] == sent
        and out["throughput_drop_pct"] is not None
        and out["throughput_drop_pct"] <= TARGETS["throughput_drop_pct"]
    )
    out["namespace"] = ns
    return out


def pooled_latencies(
    per_leg: dict[bool, list[dict[str, list[float]]]], warmup: bool
) -> dict[str, Any]:
    """Percentiles of all measured legs' replies together, per mode, and their cost: a
    leg's p99 rests on its slowest 1 % (40 replies at the defaults); pooled, on every
    leg's. The warm-up leg (the first of each mode) is left out. ``halves`` does the same
    for the two halves of each reply's latency (split_latencies)."""

    def pool(part: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for secure, legs in per_leg.items():
            merged = [v for leg in legs[1 if warmup else 0 :] for v in leg.get(part, [])]
            out["secure" if secure else "insecure"] = latency_percentiles(merged)
        on, off = out["secure"], out["insecure"]
        out["security_cost"] = {
            k: round((on[k] - off[k]) / off[k], 3) if on[k] is not None and off[k] else None
            for k in ("p50", "p95", "p99")
        }
        return out

    return {**pool("total"), "halves": {part: pool(part) for part in ("to_worker", "from_worker")}}


def bench_chat_command(
    ctx: typer.Context,
    rate: Annotated[
        float, typer.Option(min=0, help="Transactions/s of the steady stream load (0 = max).")
    ] = 1000.0,
    chat_rate: Annotated[float, typer.Option(min=1, help="Chatbot requests per second.")] = 200.0,
    seconds: Annotated[float, typer.Option(min=2, help="Length of each measured phase.")] = 20.0,
    customers: Annotated[int, typer.Option(min=10, help="Customers of the synthetic bank.")] = 2000,
    security: Annotated[
        str,
        typer.Option(
            help="both: an insecure and a secure temporary broker, compared; "
            "current: the configured broker."
        ),
    ] = "both",
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="--security both: measured legs per mode (interleaved; an even number "
            "makes whole ABBA blocks, so a steady drift hits both modes alike).",
        ),
    ] = 4,
    warmup: Annotated[
        bool, typer.Option(help="--security both: one leg per mode first, not compared.")
    ] = True,
    broker_per_leg: Annotated[bool, typer.Option(help=BROKER_PER_LEG_HELP)] = False,
    against: Annotated[
        str | None,
        typer.Option(
            help="Also run the chat path of this git revision (on a PLAINTEXT broker), "
            "--repeats mirrored rounds of it, this insecure and this secure "
            "(bench/chat_against.py)."
        ),
    ] = None,
) -> None:
    """Chatbot p50/p99 reply latency at a steady request rate while the stream runs, the
    stream's throughput with and without that load, and event-to-enriched latency."""
    from app.cli import settings_from
    from app.cli_support import require_broker

    settings = settings_from(ctx)
    if against is not None:
        from bench.chat_against import compare_chat_revisions

        doc = compare_chat_revisions(
            against, settings.cache_dir, settings.silos, repeats, warmup,
            rate=rate, chat_rate=chat_rate, seconds=seconds, customers=customers,
        )  # fmt: skip
        typer.echo(f"pooled p50/p95/p99 against {against}: {doc['vs_reference']}; security "
                   f"{doc['security_cost']}; target <= {doc['target_vs_reference']} (secure): "
                   f"{'met' if doc['target_met'] else 'NOT met'}")  # fmt: skip
        typer.echo(orjson.dumps(doc).decode())
        return
    if security == "both" and not settings.bootstrap_servers:  # --bootstrap: that cluster
        from bench.security import compare_security

        pooled: dict[bool, list[dict[str, list[float]]]] = {False: [], True: []}  # per leg

        def measure(bootstrap: str, secure: bool) -> dict[str, Any]:
            local = settings.model_copy(update={"bootstrap_servers": bootstrap})
            pooled[secure].append({})
            return run_bench(local, rate, chat_rate, seconds, customers, pooled[secure][-1])

        figures = {"chat_p50_ms": False, "chat_p99_ms": False, "stream_eps_with_chat": True,
                   "event_to_enriched_ms.p50": False, "worker_cpu_ms_per_1k": False,
                   "broker_cpu_share": False, "broker_cpu_share_steady": False}  # fmt: skip
        doc = compare_security(
            measure, settings.cache_dir, figures, settings.silos, repeats, warmup, broker_per_leg
        )
        doc["pooled"] = pooled_latencies(pooled, warmup)
        typer.echo(f"security cost (medians of {repeats} legs per mode): {doc['security_cost']}; "
                   f"paired: {doc['paired_cost']}; target <= {doc['security_target']}: "
                   f"{'met' if doc['security_target_met'] else 'NOT met'}")  # fmt: skip
        typer.echo(orjson.dumps(doc).decode())
        return
    require_broker(settings)
    result = run_bench(settings, rate, chat_rate, seconds, customers)

    def f(value: Any, unit: str = " ms") -> str:
        return "n/a" if value is None else f"{value:,.1f}{unit}"

    e2e = result["event_to_enriched_ms"]
    typer.echo(
        f"chatbot at {chat_rate:.0f} req/s: p50 {f(result['chat_p50_ms'])}, "
        f"p99 {f(result['chat_p99_ms'])}, {result['chat_replies']}/{result['chat_sent']} "
        f"answered; stream {f(result['stream_eps_without_chat'], '')} -> "
        f"{f(result['stream_eps_with_chat'], '')} enriched/s "
        f"(drop {f(result['throughput_drop_pct'], ' %')}); event-to-enriched p50 "
        f"{f(e2e['p50'])}, p99 {f(e2e['p99'])}"
    )
    typer.echo(orjson.dumps(result).decode())
