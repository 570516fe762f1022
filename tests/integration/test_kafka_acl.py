"""Per-principal proof on the real, secure test broker (issue 12, item 4).

Each principal does its job and is refused everything else: silo 1's credentials reading
``silo.0.batches`` get an authorization error, a silo cannot write ``fl.model.global``, a
client without credentials or with a wrong password is refused, nothing is auto-created.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import topics
from app.fl.kafka_io import ensure_topics, publish_round, read_models, silo_group
from app.kafka.access import granted
from app.kafka.principals import (
    BANK,
    FL_SERVER,
    WORKER,
    ask_group_prefix,
    silo_principal,
    tenant_principal,
)
from app.kafka.provision import provision
from app.kafka.security import PLAINTEXT, KafkaIdentity, client_config, read_client_config
from app.stream.harness import create_topics
from topics import chat_tenants, namespaced

pytestmark = pytest.mark.integration

GROUP_DENIED = KafkaError.GROUP_AUTHORIZATION_FAILED
DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, GROUP_DENIED}


def _who(clients: Path, principal: str) -> KafkaIdentity:
    return read_client_config(clients / f"{principal}.conf")


def _write(bootstrap: str, ident: KafkaIdentity, topic: str, n: int = 3) -> KafkaError | None:
    """Produce ``n`` records as ``ident``; the first delivery error (None: all delivered)."""
    errors: list[KafkaError] = []
    # not idempotent: an idempotent producer without any WRITE fails on the cluster, not
    # on the topic, and the point here is the topic
    config = {"enable.idempotence": False, "message.timeout.ms": 15000}
    producer = Producer(client_config(bootstrap, ident, **config))
    for i in range(n):
        producer.produce(
            topic, key=b"acl-test", value=b"v%d" % i,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )  # fmt: skip
    producer.flush(30)
    return errors[0] if errors else None


def _read(
    bootstrap: str, ident: KafkaIdentity, topic: str, group: str, want: int, timeout_s: float = 30
) -> tuple[int, KafkaError | None]:
    """Subscribe as ``ident`` in ``group``; (records read, first error) once ``want`` arrived,
    an error came, or the time is up."""
    config = {"group.id": group, "auto.offset.reset": "earliest"}
    consumer = Consumer(client_config(bootstrap, ident, **config))
    got, error = 0, None
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while got < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                error = msg.error()
                break
            got += 1
    finally:
        consumer.close()
    return got, error


def _read_assigned(bootstrap: str, ident: KafkaIdentity, topic: str) -> KafkaError | None:
    """Assign partition 0 of ``topic`` as ``ident`` (no group needed); the error a fetch
    gets, None if a record came."""
    consumer = Consumer(client_config(bootstrap, ident, **{"group.id": "unused-assign-only"}))
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            # librdkafka looks up the (ungranted) group's coordinator even for an assign-only
            # consumer; that error is reported but fetching goes on: wait for the fetch
            if msg is None or (msg.error() and msg.error().code() == GROUP_DENIED):
                continue
            return msg.error()
    finally:
        consumer.close()
    raise AssertionError(f"neither a record nor an error from {topic} in 20 s")


def _admin_errors(bootstrap: str, ident: KafkaIdentity) -> tuple[bool, list[KafkaError]]:
    """(whether a metadata request succeeded, the client errors seen) as ``ident``."""
    seen: list[KafkaError] = []
    admin = AdminClient(client_config(bootstrap, ident, error_cb=seen.append))
    try:
        admin.list_topics(timeout=8)
        return True, seen
    except KafkaException:
        admin.poll(0.5)
        return False, seen


@pytest.fixture(scope="module")
def silo_setup(kafka_bootstrap: str, kafka_clients: Path) -> dict[str, Any]:
    """Silo topics 0 and 1 with records, and the silos' groups of one model granted."""
    model = f"acl-{time.monotonic_ns() % 10**8}"
    groups = {s: silo_group(model, s) for s in (0, 1)}
    ensure_topics(kafka_bootstrap, [0, 1])
    provision(kafka_bootstrap, "", [0, 1], (), groups, stream=False)
    admin = _who(kafka_clients, "admin")
    for silo in (0, 1):
        assert _write(kafka_bootstrap, admin, topics.silo_batches(silo)) is None
    return {"model": model, "groups": groups}


def test_each_silo_reads_only_its_own_topic_under_its_own_group(
    kafka_bootstrap: str, kafka_clients: Path, silo_setup: dict[str, Any]
) -> None:
    # Prepare
    groups = silo_setup["groups"]
    silo0, silo1 = _who(kafka_clients, silo_principal(0)), _who(kafka_clients, silo_principal(1))

    # Execute
    own = _read(kafka_bootstrap, silo0, topics.silo_batches(0), groups[0], want=3)
    other = _read(kafka_bootstrap, silo1, topics.silo_batches(0), groups[1], want=1)
    foreign_group = _read(kafka_bootstrap, silo1, topics.silo_batches(1), groups[0], want=1)

    # Assert
    assert own == (3, None), own
    assert other[0] == 0 and other[1] is not None
    assert other[1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, other[1]
    assert foreign_group[1] is not None and foreign_group[1].code() in DENIED, foreign_group


def test_only_the_fl_server_writes_the_model_topic(
    kafka_bootstrap: str, kafka_clients: Path, silo_setup: dict[str, Any]
) -> None:
    # Prepare
    model = silo_setup["model"]
    silo0, server = _who(kafka_clients, silo_principal(0)), _who(kafka_clients, FL_SERVER)

    # Execute
    by_silo = _write(kafka_bootstrap, silo0, topics.MODEL_GLOBAL)
    publish_round(
        kafka_bootstrap, model, b"frame", {"round": 1},
        producer_factory=lambda b, **kw: Producer(client_config(b, server, **kw)),
    )  # fmt: skip
    server_reads_silo = _read(
        kafka_bootstrap, server, topics.silo_batches(0), f"fedstream-scan-{model}", want=1
    )[1]

    # Assert
    assert by_silo is not None and by_silo.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert read_models(kafka_bootstrap, model) == [b"frame"]  # (read as the admin)
    assert server_reads_silo is not None
    assert server_reads_silo.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_no_credentials_or_a_wrong_password_are_refused(
    kafka_bootstrap: str, kafka_clients: Path
) -> None:
    # Prepare
    good = _who(kafka_clients, silo_principal(0))
    wrong = dataclasses.replace(good, password=good.password + "x")
    no_tls_ca = dataclasses.replace(good, ca=None)  # the system trust store does not know it

    # Execute
    as_good = _admin_errors(kafka_bootstrap, good)
    as_wrong = _admin_errors(kafka_bootstrap, wrong)
    as_nobody = _admin_errors(kafka_bootstrap, PLAINTEXT)
    untrusted = _admin_errors(kafka_bootstrap, no_tls_ca)

    # Assert
    assert as_good[0]
    assert not as_wrong[0]
    assert any(e.code() == KafkaError._AUTHENTICATION for e in as_wrong[1]), as_wrong[1]
    assert not as_nobody[0]
    assert not untrusted[0]
    assert any(e.code() == KafkaError._SSL for e in untrusted[1]), untrusted[1]


def test_stream_principals_hold_only_their_jobs(kafka_bootstrap: str, kafka_clients: Path) -> None:
    # Prepare: a namespaced deployment with its ACLs (as `topics apply` gives them)
    ns = f"acl{time.monotonic_ns() % 10**8}"
    create_topics(kafka_bootstrap, [0, 1], 2, ns)
    worker, bank = _who(kafka_clients, WORKER), _who(kafka_clients, BANK)
    t1 = _who(kafka_clients, tenant_principal("silo-1"))
    txns, silo0 = namespaced(topics.TRANSACTIONS, ns), namespaced(topics.silo_batches(0), ns)
    group = namespaced(topics.WORKER_APP_ID, ns)

    # Execute + Assert: the bank writes the inputs and reads nothing
    assert _write(kafka_bootstrap, bank, txns) is None
    assert _read_assigned(kafka_bootstrap, bank, txns).code() in DENIED  # type: ignore[union-attr]
    assert _write(kafka_bootstrap, bank, silo0) is not None
    # the worker reads the inputs in its group and writes the silo topics, but reads none
    assert _read(kafka_bootstrap, worker, txns, group, want=3) == (3, None)
    assert _write(kafka_bootstrap, worker, silo0) is None
    assert _read_assigned(kafka_bootstrap, worker, silo0).code() in DENIED  # type: ignore[union-attr]
    # a tenant writes its own request topic only and reads its own responses only
    assert _write(kafka_bootstrap, t1, namespaced(topics.chat_requests("silo-1"), ns)) is None
    refused = _write(kafka_bootstrap, t1, namespaced(topics.chat_requests("silo-0"), ns))
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    t0_responses = namespaced(topics.chat_responses("silo-0"), ns)
    assert _write(kafka_bootstrap, worker, t0_responses) is None
    stolen = _read(kafka_bootstrap, t1, t0_responses, f"{ask_group_prefix('silo-1')}x", want=1)
    assert stolen[1] is not None and stolen[1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # nothing is auto-created, whoever asks
    missing = _write(kafka_bootstrap, worker, namespaced("silo.0.new-topic", ns))
    assert missing is not None
    assert (
        namespaced("silo.0.new-topic", ns)
        not in AdminClient(client_config(kafka_bootstrap)).list_topics(timeout=10).topics
    )


def test_provision_deletes_its_own_stale_acls_and_nothing_else(
    kafka_bootstrap: str, kafka_clients: Path
) -> None:
    # Prepare: a deployment with tenants silo-0 and silo-1, and another namespace's ACLs
    ns = f"prune{time.monotonic_ns() % 10**8}"
    create_topics(kafka_bootstrap, [0, 1], 1, ns)
    provision(kafka_bootstrap, f"{ns}x", [0, 1], chat_tenants((0, 1)))
    t0, t1 = (_who(kafka_clients, tenant_principal(f"silo-{s}")) for s in (0, 1))
    requests = {s: namespaced(topics.chat_requests(f"silo-{s}"), ns) for s in (0, 1)}
    assert _write(kafka_bootstrap, t1, requests[1]) is None
    admin = AdminClient(client_config(kafka_bootstrap))
    gone = tenant_principal("silo-1")

    # Execute: silo 1 leaves the deployment
    report = provision(kafka_bootstrap, ns, [0], chat_tenants((0,)), prune=("stream",))

    # Assert: its tenant's ACLs of this namespace are deleted and enforced as such; the
    # other tenant and the other namespace keep theirs
    left = granted(admin)
    assert report is not None and report.revoked >= 3
    assert not [g for g in left if g.principal == gone and g.name.startswith(f"{ns}.")]
    assert [g for g in left if g.principal == gone and g.name.startswith(f"{ns}x.")]
    assert _write(kafka_bootstrap, t0, requests[0]) is None
    refused = _write(kafka_bootstrap, t1, requests[1])
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_fl_up_provisioning_drops_the_group_of_a_model_no_longer_trained(
    kafka_bootstrap: str,
) -> None:
    # Prepare: silo 70 granted the group of an old model; silo 71 another deployment's
    admin = AdminClient(client_config(kafka_bootstrap))
    old, new, other = (silo_group(m, s) for m, s in (("old", 70), ("new", 70), ("old", 71)))
    provision(kafka_bootstrap, "", [70, 71], (), {70: old, 71: other}, stream=False)

    # Execute: training model "new" on silo 70 (as `fl up` provisions)
    report = provision(kafka_bootstrap, "", [70], (), {70: new}, stream=False, prune=("fl",))

    # Assert
    groups = {(g.principal, g.name) for g in granted(admin) if g.resource == "GROUP"}
    assert report is not None and report.revoked == 2  # READ and DESCRIBE of the old group
    assert (silo_principal(70), new) in groups and (silo_principal(70), old) not in groups
    assert (silo_principal(71), other) in groups
