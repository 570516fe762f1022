"""Faust wiring of :class:`app.stream.loop.StreamLoop`: chat requests, follower, poll timer.

:func:`attach_loop` is called once by :func:`app.stream.worker.create_worker_app`; the
transaction agent there calls ``loop.sync_model`` and ``loop.on_joined`` itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from app.features.spec import FeatureSpec
from app.ops.worker_metrics import WorkerMetrics
from app.settings import Settings
from app.stream.chat_reader import ChatRequestReader
from app.stream.loop import Outbox, StreamLoop
from app.stream.model_follower import ModelFollower
from app.stream.periodic import every
from app.stream.processor import StreamProcessor
from app.stream.repartition import Repartitioner
from topics import MODEL_GLOBAL, TRANSACTIONS, WORKER_APP_ID, namespaced

__all__ = ["FETCH_MAX_WAIT_MS", "FETCH_MIN_BYTES", "attach_loop", "tune_fetch_wait"]

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 20
"""Longest time the broker holds a fetch without data (Faust hard-codes 1500 ms, which
would add up to 1.5 s to a chatbot answer whenever the stream is idle)."""

FETCH_MIN_BYTES = 64 * 1024
"""What the broker gathers for a fetch before it answers early (aiokafka's default 1 answered
each fetch with the few records just appended: hundreds of fetches/s at 1,000 events/s,
each one broker, TLS and Python work); a fetch still returns after ``FETCH_MAX_WAIT_MS``."""


def tune_fetch_wait(ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make Faust's worker consumers use ``fetch_max_wait_ms = ms`` and
    ``FETCH_MIN_BYTES`` (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_fedstream_fetch_wait", None) == ms:
        return
    original = getattr(create, "_fedstream_original", create)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() for its Fetcher
        consumer._fetch_min_bytes = FETCH_MIN_BYTES  # likewise
        return consumer

    create_worker_consumer._fedstream_fetch_wait = ms  # type: ignore[attr-defined]
    create_worker_consumer._fedstream_original = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def attach_loop(
    app: faust.App,
    settings: Settings,
    spec: FeatureSpec,
    processor: StreamProcessor,
    follow_models: bool = True,
) -> StreamLoop:
    """Create the loop (outbox, model follower) and register its agent, task and timer."""
    tune_fetch_wait()
    ns = settings.namespace
    follower = (
        ModelFollower(
            settings.bootstrap,
            namespaced(MODEL_GLOBAL, ns),
            settings.model_name,
            spec.version,
            spec.n_features,
        )
        if follow_models
        else None
    )
    outbox = Outbox.connect(settings.bootstrap)
    loop = StreamLoop(spec, processor, outbox, follower, ns, settings.chat_tenants)
    misplaced = Repartitioner(settings.input_partitions, {})  # requests keyed by customer
    reader = ChatRequestReader(
        settings.bootstrap, list(loop.routes), f"{namespaced(WORKER_APP_ID, ns)}-chat"
    )
    transactions = namespaced(TRANSACTIONS, ns)
    chat_answered = WorkerMetrics.chat_answered

    def answer_chat_requests(msgs: list[Any]) -> None:
        for msg in msgs:
            if misplaced.forward_request_if_misplaced(msg, outbox.fast, outbox.errors):
                reader.done(msg)  # the worker owning its partition answers the copy
                continue
            try:
                loop.on_chat_request(
                    msg.value(), msg.key(), msg.topic(), msg.partition(), msg.offset()
                )
            except Exception as exc:  # a bug on one request must not stop the answering
                logger.exception("chat request %s[%d]@%d failed", msg.topic(),
                                 msg.partition(), msg.offset())  # fmt: skip
                loop.on_chat_error(msg.value(), msg.key(), msg.topic(), msg.partition(),
                                   msg.offset(), exc)  # fmt: skip
            chat_answered(msg.timestamp()[1])
            reader.done(msg)

    @app.task  # type: ignore[untyped-decorator]
    async def serve_chat_requests() -> None:
        # answered in this loop as soon as the reader's thread has them (chat_reader)
        reader.start(asyncio.get_running_loop(), answer_chat_requests)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def stop_chat_partitions(app_: Any, revoked: Any, **kwargs: Any) -> None:
        reader.follow(set())  # another worker may own them next

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_chat_reader(app_: Any, **kwargs: Any) -> None:
        reader.close()  # commits the offsets of the requests answered last

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def follow_chat_partitions(app_: Any, assigned: Any, **kwargs: Any) -> None:
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == transactions}
        reader.follow(owned)
        logger.info("answering chatbot requests of partitions %s (tenants %s)", sorted(owned),
                    ", ".join(r.tenant for r in loop.routes.values()))  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def start_model_follower() -> None:
        if follower is None:
            return
        follower.start()
        # Give the follower a moment to read the newest model before events stream in.
        await asyncio.get_running_loop().run_in_executor(None, follower.caught_up.wait, 10.0)

    @every(app, 0.05)  # a gap between runs: never "overlapping" (app.stream.periodic)
    async def serve_delivery_reports() -> None:
        loop.poll()

    return loop
