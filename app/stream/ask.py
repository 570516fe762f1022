"""A chatbot client over Kafka for one tenant: send to its request topic, match replies.

Used by ``fedstream ask``, the demo and ``fedstream bench chat``. A client acts as one
tenant (``silo-<id>`` or an operator, see :mod:`app.stream.tenancy`): it writes that
tenant's ``chatbot.<tenant>.requests`` and reads its ``chatbot.<tenant>.responses``
without a consumer group: it assigns every partition at its current end *before*
sending, so it sees every reply to its own requests and nothing older.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition

from app.features.records import ChatRequest
from app.kafka.clients import make_consumer, make_producer
from app.kafka.principals import ask_group_prefix
from topics import OPERATOR, chat_requests, chat_responses, namespaced

__all__ = ["ChatClient", "Reply"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, its round-trip latency and how much of it came after the worker had
    produced the reply (from the reply's Kafka CreateTime, ms resolution; None without)."""

    request_id: str
    doc: dict[str, Any]
    latency_s: float
    from_worker_s: float | None = None


class ChatClient:
    """Send questions about customers and collect the answers (a context manager).

    Parameters
    ----------
    bootstrap : str
        Kafka bootstrap servers.
    namespace : str
        Topic namespace of the deployment.
    tenant : str
        The tenant the client acts as (``silo-<id>`` or an operator).
    """

    def __init__(self, bootstrap: str, namespace: str = "", tenant: str = OPERATOR) -> None:
        self.tenant = tenant
        self.requests_topic = namespaced(chat_requests(tenant), namespace)
        self.responses_topic = namespaced(chat_responses(tenant), namespace)
        self._producer = make_producer(
            bootstrap, **{"linger.ms": 0, "compression.type": "none", "enable.idempotence": False}
        )
        self._consumer = make_consumer(
            # never joined (assign only), but named: the tenant's ACLs grant this prefix
            bootstrap,
            f"{ask_group_prefix(tenant)}{uuid.uuid4().hex[:8]}",
            # a long poll: the broker answers as soon as a reply is appended (5 ms made
            # up to 200 empty fetches/s)
            **{"fetch.wait.max.ms": 500},
        )
        self._pending: dict[str, float] = {}
        try:
            self._connect()
            self._assign()
        except BaseException:
            self._consumer.close()  # a refused client leaves no group member or thread
            raise

    def _connect(self) -> None:
        # The producer connects on its first send otherwise: the first requests of a
        # client then waited for TCP, TLS and SCRAM (45-86 ms secure, 5-34 ms plaintext,
        # measured) before they were even sent.
        topic = self.requests_topic
        meta = self._producer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            why = "no such topic" if meta is None else meta.error.str()
            raise RuntimeError(f"cannot write {topic} as tenant {self.tenant!r} (are these "
                               f"that tenant's credentials?): {why}")  # fmt: skip

    def _assign(self) -> None:
        topic = self.responses_topic
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {topic} does not exist; run `fedstream topics apply`")
        parts = []
        for p in sorted(meta.partitions):
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self._consumer.assign(parts)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._producer.flush(5)
        self._consumer.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, customer_id: str, question: str | None = None, intent: str | None = None) -> str:
        """Send one request (keyed by customer_id); returns its request id."""
        request_id = uuid.uuid4().hex
        now = time.time()
        request = ChatRequest(request_id, customer_id, question, intent, sent_ts=now)
        self._pending[request_id] = time.perf_counter()
        self._producer.produce(
            self.requests_topic, value=orjson.dumps(request.to_dict()), key=customer_id
        )
        self._producer.poll(0)
        return request_id

    def receive(self, timeout_s: float = 0.1) -> list[Reply]:
        """Replies to this client's requests that arrived within ``timeout_s``."""
        out: list[Reply] = []
        # consume(n, t) waits for n messages or t seconds: poll for the first, then drain.
        first = self._consumer.poll(timeout_s)
        if first is None:
            return out
        for msg in [first, *self._consumer.consume(num_messages=1000, timeout=0)]:
            if msg.error() is not None:
                continue
            now, wall = time.perf_counter(), time.time()
            try:
                doc = orjson.loads(msg.value() or b"")
            except orjson.JSONDecodeError:
                continue
            rid = doc.get("request_id") if isinstance(doc, dict) else None
            sent = self._pending.pop(rid, None) if isinstance(rid, str) else None
            if sent is not None:
                kind, created_ms = msg.timestamp()
                from_worker = wall - created_ms / 1000 if kind == TIMESTAMP_CREATE_TIME else None
                out.append(Reply(str(rid), doc, now - sent, from_worker))
        return out

    def ask(
        self, customer_id: str, question: str | None = None, timeout_s: float = 10.0
    ) -> Reply | None:
        """One round trip; None when no answer came within ``timeout_s``."""
        rid = self.send(customer_id, question)
        self._producer.flush(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for reply in self.receive(min(0.2, max(0.0, deadline - time.monotonic()))):
                if reply.request_id == rid:
                    return reply
        self._pending.pop(rid, None)
        return None
