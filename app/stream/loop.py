"""Closing the loop in the worker: model swaps, ``features.enriched`` and the chatbot agent.

:class:`StreamLoop` is plain Python called by the Faust agents of
:mod:`app.stream.worker` (and by tests without Faust):

- :meth:`StreamLoop.sync_model` runs before each transaction: when the
  :class:`~app.stream.model_follower.ModelFollower` has a newer model it is installed in
  the :class:`~app.stream.processor.StreamProcessor` (the batches scored by the old model
  are flushed first, see ``SiloBatchers.set_model``).
- :meth:`StreamLoop.on_joined` publishes each joined transaction to ``features.enriched``
  (transaction, silo, key aggregates, score, model round/version) and remembers the
  customer's latest row so that the chatbot can re-score and explain it with the newest
  model.
- :meth:`StreamLoop.on_chat_request` answers each tenant's chat requests on that tenant's
  responses topic (:mod:`app.stream.tenancy`); a silo tenant asking about a customer of
  another silo gets "not authorised" and no data; malformed requests go to the tenant's
  dead-letter topic and, when their id is readable, get an error reply.

Outputs go through an :class:`Outbox` of two confluent-kafka producers (C-level batching;
Faust's ``send_soon`` costs far more per record): a batching one for enriched records and
a low-latency one for replies. The worker flushes the outbox right before every offset
commit, like the silo frames, so a committed offset means its enriched record and reply
were delivered (at-least-once).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.features.event_time import StreamClock
from app.features.spec import FeatureSpec
from app.features.validation import InvalidRecord, check_key, parse_chat_request
from app.features.vectorize import aggregates_dict
from app.features.windows import activity_summary
from app.kafka.clients import delivery_errors, make_producer
from app.stream.chatbot import (
    RiskFacts,
    build_reply,
    check_reply_topic,
    error_reply,
    not_authorised_reply,
    unknown_customer_reply,
)
from app.stream.model_follower import LiveModel, ModelFollower
from app.stream.processor import Joined, StreamProcessor, dead_letter, dead_letter_key
from app.stream.tenancy import ChatRoute, chat_routes
from topics import FEATURES_ENRICHED, OPERATOR, namespaced

__all__ = ["LatestTxn", "LoopCounters", "Outbox", "StreamLoop"]

logger = logging.getLogger(__name__)

_MAX_REMEMBERED = 200_000


class Outbox:
    """Two producers: ``bulk`` (enriched, 2 ms linger) and ``fast`` (replies, no linger)."""

    def __init__(self, bootstrap: str) -> None:
        self.bulk = make_producer(bootstrap, **{"linger.ms": 2})
        self.fast = make_producer(bootstrap, **{"linger.ms": 0, "compression.type": "none"})
        self.errors = delivery_errors()

    @staticmethod
    def _send(producer: Any, topic: str, key: bytes | None, value: bytes, cb: Any) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=cb)
                return
            except BufferError:
                producer.poll(0.05)

    def send_bulk(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._send(self.bulk, topic, key, value, self.errors)

    def send_fast(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._send(self.fast, topic, key, value, self.errors)
        self.fast.poll(0)

    def poll(self) -> None:
        self.bulk.poll(0)
        self.fast.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every queued record; returns how many are still queued."""
        return int(self.bulk.flush(timeout_s)) + int(self.fast.flush(timeout_s))


@dataclass(slots=True)
class LatestTxn:
    """A customer's latest transaction as the stream saw it."""

    txn_id: str
    ts: float
    row: np.ndarray
    score: float | None
    model_version: str | None
    silo: int


@dataclass(slots=True)
class LoopCounters:
    enriched: int = 0
    replies: int = 0
    chat_invalid: int = 0
    model_swaps: int = 0
    chat_denied: int = 0


class StreamLoop:
    """See the module docstring.

    Parameters
    ----------
    spec : FeatureSpec
        The worker's feature layout (window sizes for the activity summary).
    processor : StreamProcessor
        The worker's processor (profiles, window states, batchers).
    outbox : Outbox or None
        Where records go; None collects them in :attr:`sent` (tests).
    follower : ModelFollower or None
        Source of global models; None = unscored.
    namespace : str
        Topic namespace of the deployment.
    tenants : sequence of str
        The chatbot tenants whose request topics the worker answers.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        processor: StreamProcessor,
        outbox: Outbox | None,
        follower: ModelFollower | None,
        namespace: str = "",
        tenants: tuple[str, ...] = (OPERATOR,),
    ) -> None:
        self.spec = spec
        self.columns = spec.columns
        self.processor = processor
        self.outbox = outbox
        self.follower = follower
        self.model: LiveModel | None = None
        self.enriched_topic = namespaced(FEATURES_ENRICHED, namespace)
        self.routes: dict[str, ChatRoute] = chat_routes(tenants, namespace)
        self.latest: OrderedDict[str, LatestTxn] = OrderedDict()
        self.clock = StreamClock()  # stream time for answers; no one customer moves it
        self.counters = LoopCounters()
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    # -- model --------------------------------------------------------------------------
    def sync_model(self, now_ms: int) -> list[tuple[int, bytes]]:
        """Install the follower's newest model; returns frames of the old model to send."""
        live = self.follower.latest if self.follower is not None else None
        if live is self.model or live is None:
            return []
        return self.install(live, now_ms)

    def install(self, live: LiveModel, now_ms: int) -> list[tuple[int, bytes]]:
        self.model = live
        self.counters.model_swaps += 1
        logger.info("scoring with model %s (round %d)", live.version, live.round)
        return self.processor.set_model(live.scorer.score, live.version, live.round, now_ms)

    # -- enrichment ---------------------------------------------------------------------
    def _send(self, topic: str, key: bytes | None, value: bytes, fast: bool = False) -> None:
        if self.outbox is None:
            self.sent.append((topic, key, value))
        elif fast:
            self.outbox.send_fast(topic, key, value)
        else:
            self.outbox.send_bulk(topic, key, value)

    def on_joined(self, joined: Joined, source_ms: int | None = None) -> None:
        """Publish the enriched record of a joined transaction; remember its row."""
        txn = joined.txn
        model = self.model
        version = None if model is None or joined.score is None else model.version
        doc = {
            "txn_id": txn.txn_id,
            "customer_id": txn.customer_id,
            "ts": txn.ts,
            "amount": txn.amount,
            "silo": joined.silo,
            "profile_missing": joined.profile_missing,
            "aggregates": aggregates_dict(joined.window),
            "score": joined.score,
            "model_round": None if version is None or model is None else model.round,
            "model_version": version,
            "source_ms": source_ms,
            "enriched_ms": int(time.time() * 1000),
        }
        self._send(self.enriched_topic, txn.customer_id.encode(), orjson.dumps(doc))
        self.counters.enriched += 1
        self.clock.observe(txn.customer_id, txn.ts)
        if joined.row is not None:
            latest = self.latest
            latest[txn.customer_id] = LatestTxn(
                txn.txn_id, txn.ts, joined.row.copy(), joined.score, version, joined.silo
            )
            latest.move_to_end(txn.customer_id)
            if len(latest) > _MAX_REMEMBERED:
                latest.popitem(last=False)

    def forget_customer(self, customer_id: str) -> None:
        """A deleted customer: drop its latest transaction (the chatbot no longer knows it)."""
        self.latest.pop(customer_id, None)

    # -- chatbot ------------------------------------------------------------------------
    def on_chat_request(
        self, raw: bytes, key: bytes | None, topic: str, partition: int, offset: int
    ) -> dict[str, Any] | None:
        """Answer one raw request; returns the reply sent (None when none could be sent).

        The tenant is the one whose request topic ``topic`` is. The reply goes to that
        tenant's responses topic and nowhere else: a request naming any other
        ``reply_topic`` is refused (dead letter plus an error reply on the tenant's
        responses topic), so a request cannot make the worker write into a silo's
        batches, the model topic, a DLQ, another tenant's replies or a new topic.
        """
        route = self.routes.get(topic)
        if route is None:  # not a tenant's request topic: there is nowhere safe to answer
            self.counters.chat_invalid += 1
            logger.error("chat request on %s, which is no tenant's request topic", topic)
            return None
        try:
            request = parse_chat_request(raw)
        except InvalidRecord as exc:
            return self._refuse(exc.reason, exc.request_id, route, raw, key, partition, offset)
        try:
            check_key(key, request.customer_id)
            check_reply_topic(request.reply_topic, route.responses)
        except InvalidRecord as exc:
            return self._refuse(exc.reason, request.request_id, route, raw, key, partition,
                                offset)  # fmt: skip
        if route.silo is not None and not route.may_see(self.silo_of(request.customer_id)):
            self.counters.chat_denied += 1
            reply = not_authorised_reply(request, route.tenant, route.silo)
        else:
            reply = self.answer(request)
            self.counters.replies += 1
        self._send(route.responses, request.request_id.encode(), orjson.dumps(reply), fast=True)
        return reply

    def _refuse(
        self,
        reason: str,
        request_id: str | None,
        route: ChatRoute,
        raw: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
    ) -> dict[str, Any] | None:
        """Dead-letter a request; an error reply to the tenant when its id is readable."""
        self.counters.chat_invalid += 1
        letter = dead_letter(reason, route.requests, partition, offset, key, raw)
        self._send(route.dead_letters, dead_letter_key(key), letter)
        if request_id is None:
            return None
        reply = error_reply(request_id, reason)
        self._send(route.responses, request_id.encode(), orjson.dumps(reply), fast=True)
        return reply

    def on_chat_error(
        self, raw: bytes | None, key: bytes | None, topic: str, partition: int, offset: int,
        exc: Exception,
    ) -> None:  # fmt: skip
        """A bug met on one request: dead-letter it (no request is dropped silently)."""
        self.counters.chat_invalid += 1
        route = self.routes.get(topic)
        if route is None:
            logger.error("chat request on %s, which is no tenant's request topic", topic)
            return
        reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
        letter = dead_letter(reason, topic, partition, offset, key, raw)
        self._send(route.dead_letters, dead_letter_key(key), letter)

    def silo_of(self, customer_id: str) -> int | None:
        """The silo a customer is known in (its latest transaction's, else its profile's)."""
        latest = self.latest.get(customer_id)
        if latest is not None:
            return latest.silo
        profile = self.processor.profile(customer_id)
        return None if profile is None else profile.silo

    def answer(self, request: Any) -> dict[str, Any]:
        """The reply document for a parsed :class:`ChatRequest`."""
        cid = request.customer_id
        processor = self.processor
        profile = processor.profile(cid)
        state = processor.window_state(cid)
        latest = self.latest.get(cid)
        if profile is None and state.windows.count == 0 and latest is None:
            return unknown_customer_reply(request)
        as_of = _as_of(self.clock.now, state.windows.last_ts)
        activity = activity_summary(state.windows, as_of, self.spec.windows)
        model = self.model
        if model is not None and latest is not None:
            risk = RiskFacts(
                score=model.scorer.score(latest.row),
                top_features=model.scorer.explain(latest.row, self.columns, 5),
                model_round=model.round,
                model_version=model.version,
                txn_id=latest.txn_id,
                txn_ts=latest.ts,
                event_score=latest.score,
                event_model_version=latest.model_version,
            )
        else:
            risk = RiskFacts(
                score=None,
                model_round=None if model is None else model.round,
                model_version=None if model is None else model.version,
                txn_id=None if latest is None else latest.txn_id,
                txn_ts=None if latest is None else latest.ts,
            )
        silo = latest.silo if latest is not None else (profile.silo if profile else None)
        return build_reply(request, profile=profile, silo=silo, activity=activity, risk=risk)

    # -- delivery -----------------------------------------------------------------------
    def poll(self) -> None:
        if self.outbox is not None:
            self.outbox.poll()

    def flush(self) -> None:
        """Deliver everything queued (called right before Faust commits offsets)."""
        if self.outbox is not None:
            left = self.outbox.flush()
            if left:
                logger.error("%d enriched/reply records not delivered before commit", left)


def _as_of(stream_now: float | None, customer_last: float | None) -> float:
    """Stream time of an answer: robust stream clock, or the customer's own latest event."""
    times = [t for t in (stream_now, customer_last) if t is not None]
    return max(times) if times else time.time()
