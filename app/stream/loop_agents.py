"""Faust wiring of :class:`app.stream.loop.StreamLoop`: chat agent, follower task, poll timer.

:func:`attach_loop` is called once by :func:`app.stream.worker.create_worker_app`; the
transaction agent there calls ``loop.sync_model`` and ``loop.on_joined`` itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from app.features.spec import FeatureSpec
from app.settings import Settings
from app.stream.loop import Outbox, StreamLoop
from app.stream.model_follower import ModelFollower
from app.stream.processor import StreamProcessor
from topics import CHATBOT_REQUESTS, MODEL_GLOBAL, namespaced

__all__ = ["FETCH_MAX_WAIT_MS", "attach_loop", "tune_fetch_wait"]

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 20
"""Longest time the broker holds a fetch without data (Faust hard-codes 1500 ms, which
would add up to 1.5 s to a chatbot answer whenever the stream is idle)."""


def tune_fetch_wait(ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make Faust's worker consumers use ``fetch_max_wait_ms = ms`` (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_fedstream_fetch_wait", None) == ms:
        return
    original = getattr(create, "_fedstream_original", create)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() for its Fetcher
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
    loop = StreamLoop(spec, processor, Outbox(settings.bootstrap), follower, ns)
    requests = app.topic(
        namespaced(CHATBOT_REQUESTS, ns), key_serializer="raw", value_serializer="raw"
    )

    @app.agent(requests)
    async def on_chat_requests(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            loop.on_chat_request(event.value, event.key, msg.topic, msg.partition, msg.offset)

    @app.task  # type: ignore[untyped-decorator]
    async def start_model_follower() -> None:
        if follower is None:
            return
        follower.start()
        # Give the follower a moment to read the newest model before events stream in.
        await asyncio.get_running_loop().run_in_executor(None, follower.caught_up.wait, 10.0)

    @app.timer(interval=0.05)  # type: ignore[untyped-decorator]
    async def serve_delivery_reports() -> None:
        loop.poll()

    return loop
