"""Closing the loop in the worker: model swaps, ``features.enriched`` and the chatbot agent.

:class:`StreamLoop` is plain Python called by the Faust agents of
:mod:`app.stream.worker` (and by tests without Faust):

- :meth:`StreamLoop.sync_model` runs before each micro-batch: when the
  :class:`~app.stream.model_follower.ModelFollower` has a newer model it is installed in
  the :class:`~app.stream.processor.StreamProcessor` (the batches scored by the old model
  are flushed first, see ``SiloBatchers.set_model``).
- :meth:`StreamLoop.on_batch` publishes each row of a micro-batch to ``features.enriched``
  (row id, key, time, silo, the pipeline's window aggregates, score, model round/version)
  and remembers each key's latest row so that the chatbot can re-score and explain it
  with the newest model, in the pipeline's own terms (``app.pipeline.activity``).
- :meth:`StreamLoop.on_chat_request` answers each tenant's chat requests on that tenant's
  responses topic (:mod:`app.stream.tenancy`); a silo tenant asking about a customer of
  another silo gets "not authorised" and no data; malformed requests go to the tenant's
  dead-letter topic and, when their id is readable, get an error reply.

Outputs go through an :class:`~app.stream.outbox.Outbox` of two confluent-kafka producers
(C-level batching; Faust's ``send_soon`` costs far more per record): a batching one for
enriched records and a low-latency one for replies. Before the worker writes state or
commits offsets it awaits :meth:`StreamLoop.delivered` (like the silo frames' flush), so a
committed offset means its enriched record and reply were delivered (at-least-once); the
wait never holds the event loop, also with the broker down.
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
from app.features.validation import InvalidRecord, check_key, parse_chat_request
from app.pipeline.activity import activity, feature_phrase
from app.pipeline.dsl import WindowStep
from app.stream.chatbot import (
    RiskFacts,
    build_reply,
    check_reply_topic,
    error_reply,
    not_authorised_reply,
    profile_dict,
    unknown_customer_reply,
)
from app.stream.model_follower import LiveModel, ModelFollower
from app.stream.outbox import Outbox
from app.stream.processor import Batch, Joined, StreamProcessor, dead_letter, dead_letter_key
from app.stream.tenancy import ChatRoute, chat_routes
from topics import FEATURES_ENRICHED, OPERATOR, namespaced

__all__ = ["LatestTxn", "LoopCounters", "Outbox", "StreamLoop"]

logger = logging.getLogger(__name__)

_MAX_REMEMBERED = 200_000


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
    spec : Any
        Unused (the processor's pipeline spec is the layout); kept for callers.
    processor : StreamProcessor
        The worker's processor (its pipeline, table versions, key states, batchers).
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
        spec: Any,
        processor: StreamProcessor,
        outbox: Outbox | None,
        follower: ModelFollower | None,
        namespace: str = "",
        tenants: tuple[str, ...] = (OPERATOR,),
    ) -> None:
        self.spec = processor.spec
        self.columns = list(processor.spec.columns)
        self.processor = processor
        pipeline = processor.pipeline
        self.plans = [s.plan for s in pipeline.rows.steps_of(WindowStep)]
        self.phrase = lambda column: feature_phrase(column, pipeline)
        source = pipeline.rows.source
        self.key_field = source.key
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
        return self.processor.set_model(live.score, live.version, live.round, now_ms)

    # -- enrichment ---------------------------------------------------------------------
    def _send(self, topic: str, key: bytes | None, value: bytes, fast: bool = False) -> None:
        if self.outbox is None:
            self.sent.append((topic, key, value))
        elif fast:
            self.outbox.send_fast(topic, key, value)
        else:
            self.outbox.send_bulk(topic, key, value)

    def on_joined(self, joined: Joined, source_ms: int | None = None) -> None:
        """Publish the enriched record of one processed record; remember its row."""
        self._enrich(joined.row_id, joined.key, joined.ts, joined.silo, joined.aggregates,
                     joined.profile_missing, joined.score, joined.row, source_ms, None)  # fmt: skip

    def on_batch(self, batch: Batch, source_ms: list[int | None] | None = None) -> None:
        """Publish the enriched record of every row of a micro-batch, in stream order."""
        out = batch.rows
        if out is None:
            return
        names = list(out.aggregates)
        table = [col.tolist() for col in out.aggregates.values()]
        missing = None if out.missing is None else out.missing.tolist()
        amount = out.columns.get("amount")
        amounts = amount.tolist() if amount is not None and amount.dtype.kind == "f" else None
        ts, silos = out.ts.tolist(), out.silos.tolist()
        for i, key in enumerate(out.keys):
            aggregates = {n: col[i] for n, col in zip(names, table, strict=True)}
            self._enrich(out.ids[i], key, ts[i], silos[i], aggregates,
                         missing is not None and missing[i] == 1.0, batch.scores[i], out.x[i],
                         None if source_ms is None else source_ms[i],
                         None if amounts is None else amounts[i])  # fmt: skip

    def _enrich(self, row_id: str, key: str, ts: float, silo: int, aggregates: dict[str, Any],
                profile_missing: bool, score: float | None, row: np.ndarray,
                source_ms: int | None, amount: float | None) -> None:  # fmt: skip
        model = self.model
        version = None if model is None or score is None else model.version
        doc = {
            "txn_id": row_id,
            "customer_id": key,
            "ts": ts,
            "amount": amount,
            "silo": silo,
            "profile_missing": profile_missing,
            "aggregates": aggregates,
            "score": score,
            "model_round": None if version is None or model is None else model.round,
            "model_version": version,
            "source_ms": source_ms,
            "enriched_ms": int(time.time() * 1000),
        }
        if self.key_field != "customer_id":
            doc[self.key_field] = key
        if amount is None:
            del doc["amount"]
        self._send(self.enriched_topic, key.encode(), orjson.dumps(doc))
        self.counters.enriched += 1
        self.clock.observe(key, ts)
        latest = self.latest
        latest[key] = LatestTxn(row_id, ts, row.copy(), score, version, silo)
        latest.move_to_end(key)
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
        """The silo a key is known in (its latest row's, else its table version's)."""
        latest = self.latest.get(customer_id)
        if latest is not None:
            return latest.silo
        silo = profile_dict(self.processor.profile(customer_id) or {}).get("silo")
        return int(silo) if isinstance(silo, (int, float)) and silo == silo else None

    def answer(self, request: Any) -> dict[str, Any]:
        """The reply document for a parsed :class:`ChatRequest`."""
        cid = request.customer_id
        processor = self.processor
        profile = processor.profile(cid)
        state = processor.window_state(cid)
        latest = self.latest.get(cid)
        counted = sum(w.n for w in state.windows)
        if profile is None and counted == 0 and latest is None:
            return unknown_customer_reply(request)
        last_ts = state.windows[0].last_ts if state.windows else None
        as_of = _as_of(self.clock.now, last_ts)
        facts = activity(self.plans, state, as_of)
        model = self.model
        if model is not None and latest is not None:
            risk = RiskFacts(
                score=model.score(latest.row, latest.silo),
                top_features=model.scorer.explain(latest.row, self.columns, 5),
                model_round=model.round,
                model_version=model.version,
                txn_id=latest.txn_id,
                txn_ts=latest.ts,
                event_score=latest.score,
                event_model_version=latest.model_version,
                phrase=self.phrase,
            )
        else:
            risk = RiskFacts(
                score=None,
                model_round=None if model is None else model.round,
                model_version=None if model is None else model.version,
                txn_id=None if latest is None else latest.txn_id,
                txn_ts=None if latest is None else latest.ts,
                phrase=self.phrase,
            )
        silo = latest.silo if latest is not None else self.silo_of(cid)
        return build_reply(request, profile=profile, silo=silo, activity=facts, risk=risk)

    # -- delivery -----------------------------------------------------------------------
    def poll(self) -> None:
        if self.outbox is not None:
            self.outbox.poll()

    async def delivered(self) -> None:
        """Return once everything sent so far is delivered (awaited before the worker
        writes state or commits offsets; the event loop runs meanwhile)."""
        if self.outbox is not None:
            await self.outbox.wait_delivered()


def _as_of(stream_now: float | None, customer_last: float | None) -> float:
    """Stream time of an answer: robust stream clock, or the customer's own latest event."""
    times = [t for t in (stream_now, customer_last) if t is not None]
    return max(times) if times else time.time()
