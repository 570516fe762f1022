"""The chatbot's silo boundary on a real broker with a real worker.

- An attacker's request names every catalogue topic (other tenants' responses included,
  and one that does not exist) as its ``reply_topic``. Each must be refused: a dead letter
  and an error reply on the requester's own responses topic, and not one record written
  to the named topic (nor the unknown topic created).
- Per-tenant chat: a silo tenant gets answers about its own silo's customers only
  ("not authorised" and no data otherwise); an operator about any; ``fedstream ask``
  acts as the tenant of ``--tenant`` or ``FEDSTREAM_TENANT``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.kafka.admin import make_admin
from app.kafka.principals import tenant_principal
from app.kafka.security import acting_as, read_client_config
from app.produce.synthetic import SyntheticBank
from app.stream.ask import ChatClient
from app.stream.harness import (
    FEDSTREAM,
    WorkerProcess,
    end_offsets,
    produce_records,
    read_topic,
)
from tests.integration.stream_support import PARTITIONS, SILOS, new_namespace
from topics import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    CUSTOMERS,
    OPERATOR,
    catalogue,
    dlq,
    namespaced,
    silo_tenant,
)


@dataclass
class ChatDeployment:
    ns: str
    cid: str
    worker: WorkerProcess
    silo_of: dict[str, int]


@pytest.fixture(scope="module")
def chat_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatDeployment]:
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
        yield ChatDeployment(ns, cid, worker, {k: int(v["silo"]) for k, v in customers})


def _request(rid: str, cid: str, reply_topic: str) -> bytes:
    return orjson.dumps({"request_id": rid, "customer_id": cid, "reply_topic": reply_topic})


def test_reply_topic_other_than_the_requesters_is_refused_for_every_topic(
    kafka_bootstrap: str, chat_worker: ChatDeployment
) -> None:
    # Prepare: every catalogue topic but the requester's own responses topic, plus a new one
    ns, cid, worker = chat_worker.ns, chat_worker.cid, chat_worker.worker
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
    kafka_bootstrap: str, chat_worker: ChatDeployment
) -> None:
    # Prepare
    ns, cid = chat_worker.ns, chat_worker.cid
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


def test_silo_tenants_get_only_their_own_customers_and_operators_any(
    kafka_bootstrap: str, chat_worker: ChatDeployment
) -> None:
    # Prepare: one customer of silo 0 and one of silo 1
    ns, silo_of = chat_worker.ns, chat_worker.silo_of
    c0 = next(c for c, s in silo_of.items() if s == 0)
    c1 = next(c for c, s in silo_of.items() if s == 1)

    # Execute
    asked: dict[tuple[str, str], dict[str, Any]] = {}
    for tenant in (silo_tenant(0), silo_tenant(1), OPERATOR):
        with ChatClient(kafka_bootstrap, ns, tenant) as client:
            for cid in (c0, c1):
                reply = client.ask(cid, timeout_s=20)
                assert reply is not None, f"{tenant} got no answer about {cid}"
                asked[(tenant, cid)] = reply.doc

    # Assert
    for tenant, own, other in ((silo_tenant(0), c0, c1), (silo_tenant(1), c1, c0)):
        assert asked[(tenant, own)]["status"] == "ok"
        assert asked[(tenant, own)]["profile"]["customer_id"] == own
        denied = asked[(tenant, other)]
        assert denied["status"] == "not_authorised" and "not authorised" in denied["answer"]
        assert set(denied) == {"request_id", "status", "customer_id", "answer"}  # no data
    assert asked[(OPERATOR, c0)]["silo"] == 0 and asked[(OPERATOR, c1)]["silo"] == 1
    assert all(asked[(OPERATOR, c)]["status"] == "ok" for c in (c0, c1))


def test_fedstream_ask_takes_the_tenant_from_the_flag_or_the_environment(
    kafka_bootstrap: str, chat_worker: ChatDeployment
) -> None:
    # Prepare
    ns, silo_of = chat_worker.ns, chat_worker.silo_of
    c1 = next(c for c, s in silo_of.items() if s == 1)
    env = {**os.environ, "FEDSTREAM_NAMESPACE": ns}

    def ask(*args: str, tenant_env: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = env if tenant_env is None else {**env, "FEDSTREAM_TENANT": tenant_env}
        cmd = [str(FEDSTREAM), "--bootstrap", kafka_bootstrap, "ask", c1, "--json",
               "--timeout", "20", *args]  # fmt: skip
        return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=120)

    # Execute
    as_silo1 = ask("--tenant", silo_tenant(1))
    as_silo0_env = ask(tenant_env=silo_tenant(0))
    flag_wins = ask("--tenant", silo_tenant(1), tenant_env=silo_tenant(0))

    # Assert: exit 0 with data for the own silo, exit 3 and no data for another silo
    assert as_silo1.returncode == 0, as_silo1.stderr
    assert orjson.loads(as_silo1.stdout)["status"] == "ok"
    assert as_silo0_env.returncode == 3, as_silo0_env.stderr
    assert orjson.loads(as_silo0_env.stdout)["status"] == "not_authorised"
    assert flag_wins.returncode == 0 and orjson.loads(flag_wins.stdout)["status"] == "ok"


def test_a_client_with_another_tenants_credentials_is_refused_before_it_sends(
    kafka_bootstrap: str, kafka_clients: Path, chat_worker: ChatDeployment
) -> None:
    # Prepare: silo 1's tenant credentials, silo 0's request topic
    silo1 = read_client_config(kafka_clients / f"{tenant_principal(silo_tenant(1))}.conf")

    # Execute: the client connects (and checks its request topic) at construction
    with acting_as(silo1), pytest.raises(RuntimeError) as refused:
        ChatClient(kafka_bootstrap, chat_worker.ns, silo_tenant(0))

    # Assert: one line that names the topic and the tenant
    message = str(refused.value)
    assert "\n" not in message and "cannot write" in message
    assert silo_tenant(0) in message and "chatbot." in message
