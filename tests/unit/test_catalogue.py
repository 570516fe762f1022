"""The topic catalogue is complete and self-consistent."""

from __future__ import annotations

import json

import pytest

from topics import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    CUSTOMERS,
    OPERATOR,
    TRANSACTIONS,
    catalogue,
    chat_requests,
    chat_responses,
    chat_tenants,
    check_tenant,
    dlq,
    silo_batches,
    silo_of_topic,
    silo_tenant,
    tenant_silo,
    worker_changelogs,
)
from topics.catalogue import SCHEMA_DIR


def test_catalogue_has_every_topic_once_and_inputs_are_copartitioned() -> None:
    specs = catalogue([0, 1, 2, 2], input_partitions=6)
    names = [spec.name for spec in specs]
    assert len(names) == len(set(names))
    by_name = {spec.name: spec for spec in specs}
    assert by_name[CUSTOMERS].partitions == by_name[TRANSACTIONS].partitions == 6
    assert by_name[CHATBOT_REQUESTS].partitions == 6
    assert by_name[CUSTOMERS].compacted and not by_name[TRANSACTIONS].compacted
    for topic in (CUSTOMERS, TRANSACTIONS, CHATBOT_REQUESTS):
        assert dlq(topic) in by_name
    assert [n for n in names if n.startswith("silo.")] == [silo_batches(i) for i in range(3)]


def test_every_json_payload_has_a_schema_file() -> None:
    for spec in catalogue([0]):
        if spec.value.startswith("json:"):
            schema = json.loads((SCHEMA_DIR / spec.value.removeprefix("json:")).read_text())
            assert schema["type"] == "object", spec.name


def test_silo_topic_names_round_trip() -> None:
    assert silo_of_topic(silo_batches(12)) == 12
    with pytest.raises(ValueError):
        silo_of_topic("bank.transactions")
    with pytest.raises(ValueError):
        silo_batches(-1)


def test_every_tenant_has_copartitioned_requests_a_dlq_and_responses() -> None:
    specs = catalogue([0, 1], input_partitions=6, namespace="ns", operators=("ops", "audit"))
    by_name = {spec.name: spec for spec in specs}
    tenants = chat_tenants([0, 1], ("ops", "audit"))
    assert tenants == ("ops", "audit", "silo-0", "silo-1")
    for tenant in tenants:
        assert by_name[f"ns.{chat_requests(tenant)}"].partitions == 6
        assert f"ns.{dlq(chat_requests(tenant))}" in by_name
        assert by_name[f"ns.{chat_responses(tenant)}"].partitions == 1
    assert chat_requests(OPERATOR) == CHATBOT_REQUESTS
    assert chat_responses(OPERATOR) == CHATBOT_RESPONSES


def test_tenant_names() -> None:
    assert tenant_silo(silo_tenant(7)) == 7 and tenant_silo(OPERATOR) is None
    assert tenant_silo("silo-07") is None  # not the name of silo 7: an operator's name
    for bad in ("", "Ops", "a.b", "x" * 49, "silo_1"):
        with pytest.raises(ValueError):
            check_tenant(bad)
    with pytest.raises(ValueError):
        chat_tenants([0], ("silo-3",))


def test_worker_changelogs_are_named_as_faust_names_them() -> None:
    from app.settings import Settings
    from app.stream.spec import feature_spec
    from app.stream.worker import create_worker_app

    settings = Settings(namespace="ns", input_partitions=6)
    handle = create_worker_app(settings, feature_spec(settings), store="memory://",
                               follow_models=False)  # fmt: skip
    faust_names = {t.changelog_topic_name for t in handle.app.tables.values()}
    specs = worker_changelogs(6, "ns")
    assert faust_names == {spec.name for spec in specs}
    assert all(s.partitions == 6 and s.compacted for s in specs)
