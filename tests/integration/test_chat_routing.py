"""Chat replies go only to the requester's responses topic (real broker, real worker).

An attacker's request names every catalogue topic (and one that does not exist) as its
``reply_topic``. Each must be refused: a dead letter and an error reply on the
requester's own responses topic, and not one record written to the named topic (nor the
unknown topic created).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from app.kafka.admin import make_admin
from app.produce.synthetic import SyntheticBank
from app.stream.ask import ChatClient
from app.stream.harness import WorkerProcess, end_offsets, produce_records, read_topic
from tests.integration.stream_support import PARTITIONS, SILOS, new_namespace
from topics import CHATBOT_REQUESTS, CHATBOT_RESPONSES, CUSTOMERS, catalogue, dlq, namespaced


@pytest.fixture(scope="module")
def chat_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, WorkerProcess]]:
    # Prepare: a namespace with a few customer profiles and a worker that answers about them
    ns = new_namespace(kafka_bootstrap, "chat")
    customers = [
        (key, value)
        for kind, key, value in SyntheticBank(customers=20, silos=len(SILOS), seed=3).events(100)
        if kind == "customer"
    ]
    produce_records(
        kafka_bootstrap,
        [(namespaced(CUSTOMERS, ns), k.encode(), orjson.dumps(v)) for k, v in customers],
    )
    worker = WorkerProcess(kafka_bootstrap, ns, tmp_path_factory.mktemp("chat-worker"),
                           args=["--store", "memory://"])  # fmt: skip
    with worker:
        cid = customers[0][0]
        deadline = time.monotonic() + 120
        with ChatClient(kafka_bootstrap, ns) as client:
            while True:  # the worker answers once it owns the partitions and read the profiles
                reply = client.ask(cid, timeout_s=5)
                if reply is not None and reply.doc["status"] == "ok":
                    break
                worker.check_alive()
                assert time.monotonic() < deadline, f"no answer in time:\n{worker.log_tail()}"
        yield ns, cid, worker


def _request(rid: str, cid: str, reply_topic: str) -> bytes:
    return orjson.dumps({"request_id": rid, "customer_id": cid, "reply_topic": reply_topic})


def test_reply_topic_other_than_the_requesters_is_refused_for_every_topic(
    kafka_bootstrap: str, chat_worker: tuple[str, str, WorkerProcess]
) -> None:
    # Prepare: every catalogue topic but the requester's own responses topic, plus a new one
    ns, cid, worker = chat_worker
    responses, letters_topic = (
        namespaced(CHATBOT_RESPONSES, ns),
        namespaced(dlq(CHATBOT_REQUESTS), ns),
    )
    names = [spec.name for spec in catalogue(SILOS, PARTITIONS, ns)]
    targets = [n for n in names if n != responses] + [namespaced("no.such.topic", ns)]
    requests = namespaced(CHATBOT_REQUESTS, ns)
    watched = [n for n in names if n not in (responses, letters_topic, requests)]
    before = end_offsets(kafka_bootstrap, watched)
    requests_before = sum(end_offsets(kafka_bootstrap, [requests]).values())
    letters_before = len(read_topic(kafka_bootstrap, letters_topic))
    by_rid = {f"evil-{i}": topic for i, topic in enumerate(targets)}

    # Execute
    produce_records(
        kafka_bootstrap,
        [(requests, cid.encode(), _request(rid, cid, topic)) for rid, topic in by_rid.items()],
    )  # fmt: skip
    deadline = time.monotonic() + 60
    errors: dict[str, dict[str, Any]] = {}
    letters: list[dict[str, Any]] = []
    while time.monotonic() < deadline and (len(errors) < len(by_rid) or len(letters) < len(by_rid)):
        time.sleep(0.5)
        errors = {
            doc["request_id"]: doc
            for r in read_topic(kafka_bootstrap, responses)
            if (doc := orjson.loads(r.value))["request_id"] in by_rid
        }
        letters = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, letters_topic)]
        letters = letters[letters_before:]

    # Assert: an error reply on the own responses topic for each, with no customer data
    assert set(errors) == set(by_rid), f"missing replies:\n{worker.log_tail()}"
    for rid, doc in errors.items():
        assert doc["status"] == "error" and "refused" in doc["error"], doc
        assert by_rid[rid] in doc["error"]
        assert "profile" not in doc and "activity" not in doc
    # one dead letter each, naming the reason and keeping the original bytes' topic
    assert len(letters) == len(by_rid)
    assert all("refused" in d["reason"] for d in letters)
    assert {d["topic"] for d in letters} == {requests}
    # nothing was written anywhere else (the requests topic holds only the requests), and
    # the unknown topic was not auto-created
    assert end_offsets(kafka_bootstrap, watched) == before
    assert sum(end_offsets(kafka_bootstrap, [requests]).values()) == requests_before + len(by_rid)
    existing = make_admin(kafka_bootstrap).list_topics(timeout=30).topics
    assert namespaced("no.such.topic", ns) not in existing
    assert worker.alive()


def test_reply_topic_naming_the_own_responses_topic_is_answered(
    kafka_bootstrap: str, chat_worker: tuple[str, str, WorkerProcess]
) -> None:
    # Prepare
    ns, cid, _worker = chat_worker
    responses = namespaced(CHATBOT_RESPONSES, ns)

    # Execute
    produce_records(
        kafka_bootstrap,
        [(namespaced(CHATBOT_REQUESTS, ns), cid.encode(), _request("own-1", cid, responses))],
    )
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        time.sleep(0.5)
        found = [
            doc
            for r in read_topic(kafka_bootstrap, responses)
            if (doc := orjson.loads(r.value))["request_id"] == "own-1"
        ]

    # Assert
    assert len(found) == 1 and found[0]["status"] == "ok" and found[0]["customer_id"] == cid
