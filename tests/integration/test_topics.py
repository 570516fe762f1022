"""The catalogue applies cleanly (twice) to a real broker, and payloads round-trip."""

from __future__ import annotations

import time

import orjson
from confluent_kafka import TopicPartition

from app.kafka.admin import apply_catalogue, describe_topics, make_admin
from app.kafka.clients import delivery_errors, make_consumer, make_producer
from topics import CUSTOMERS, MODEL_GLOBAL, TRANSACTIONS, TopicSpec, catalogue, dlq, silo_batches


def test_catalogue_applies_twice_and_configs_match(kafka_bootstrap: str) -> None:
    # Prepare
    admin = make_admin(kafka_bootstrap)
    specs = catalogue([0, 1, 2], input_partitions=4)

    # Execute
    first = apply_catalogue(admin, specs)
    second = apply_catalogue(admin, specs)
    states = describe_topics(admin)

    # Assert
    names = {spec.name for spec in specs}
    assert not first.problems and not second.problems
    assert set(first.created) | set(first.unchanged) == names
    assert second.created == [] and second.updated == [] and set(second.unchanged) == names
    for spec in specs:
        assert states[spec.name].partitions == spec.partitions, spec.name
        for key, value in spec.configs.items():
            assert states[spec.name].configs.get(key) == value, (spec.name, key)
    assert states[CUSTOMERS].configs["cleanup.policy"] == "compact"
    assert states[MODEL_GLOBAL].configs["cleanup.policy"] == "compact"
    assert states[TRANSACTIONS].partitions == states[CUSTOMERS].partitions
    assert {silo_batches(i) for i in range(3)} <= set(states)
    assert dlq(TRANSACTIONS) in states


def test_apply_repairs_config_drift_and_grows_partitions(kafka_bootstrap: str, unique: str) -> None:
    # Prepare: a topic created with fewer partitions and another retention
    admin = make_admin(kafka_bootstrap)
    name = f"test.drift.{unique}"
    apply_catalogue(admin, [TopicSpec(name, 1, {"retention.ms": "1000"})])
    deadline = time.monotonic() + 15  # topic metadata reaches the broker's cache asynchronously
    while name not in describe_topics(admin, [name]) and time.monotonic() < deadline:
        time.sleep(0.2)
    wanted = TopicSpec(name, 3, {"retention.ms": "3600000", "cleanup.policy": "compact"})

    # Execute
    report = apply_catalogue(admin, [wanted])
    # Config changes reach the broker's metadata cache asynchronously (KRaft): poll briefly.
    deadline = time.monotonic() + 15
    state = describe_topics(admin, [name])[name]
    while state.configs.get("retention.ms") != "3600000" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = describe_topics(admin, [name])[name]

    # Assert
    assert report.updated == [name] and report.grown == [name]
    assert state.partitions == 3
    assert state.configs["retention.ms"] == "3600000"
    assert state.configs["cleanup.policy"] == "compact"


def test_orjson_payload_round_trips_through_a_real_topic(kafka_bootstrap: str, unique: str) -> None:
    # Prepare
    topic = f"test.roundtrip.{unique}"
    apply_catalogue(make_admin(kafka_bootstrap), [TopicSpec(topic, 2)])
    payloads = [
        {"customer_id": f"c{i}", "amount": i * 1.25, "tags": ["a", "ü"], "n": None}
        for i in range(50)
    ]
    errors = delivery_errors()
    producer = make_producer(kafka_bootstrap)

    # Execute
    for payload in payloads:
        producer.produce(
            topic, key=payload["customer_id"], value=orjson.dumps(payload), on_delivery=errors
        )
    assert producer.flush(30) == 0
    consumer = make_consumer(kafka_bootstrap, f"test-{unique}")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    received: list[dict] = []
    deadline = time.monotonic() + 30
    while len(received) < len(payloads) and time.monotonic() < deadline:
        for msg in consumer.consume(100, timeout=0.5):
            assert msg.error() is None, msg.error()
            assert msg.key().decode() == orjson.loads(msg.value())["customer_id"]
            received.append(orjson.loads(msg.value()))
    consumer.close()

    # Assert
    assert errors.failed == 0
    assert sorted(received, key=lambda p: p["amount"]) == payloads
