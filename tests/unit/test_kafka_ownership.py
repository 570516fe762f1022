"""Which ACLs a provisioning call manages, so that it deletes only its own stale ones."""

from __future__ import annotations

from app.kafka.principals import (
    FL_SERVER,
    Grant,
    fl_grants,
    in_namespace,
    owned_by_fl,
    owned_by_stream,
    stream_grants,
)


def test_namespaces_do_not_claim_each_others_names() -> None:
    # un-namespaced: the catalogue's roots, Faust's topics, the shared group prefixes
    for name in ("bank.customers", "silo.3.", "dlq.", "chatbot.operator.requests",
                 "fl.model.global", "features.spec", "fedstream-worker-x-changelog",
                 "fedstream-fl.m.silo-0", "fedstream-ask-operator-"):  # fmt: skip
        assert in_namespace(name, ""), name
        assert not in_namespace(name, "t1"), name
    for name in ("t1.bank.customers", "t1.silo.0.", "t1.fedstream-worker-"):
        assert in_namespace(name, "t1") and not in_namespace(name, "")
        assert not in_namespace(name, "t"), "a namespace is a whole first segment"


def test_every_grant_of_a_side_is_owned_by_that_side() -> None:
    # Prepare
    stream = stream_grants("t1", [0, 1], ["operator", "silo-0", "silo-1"])
    fl = fl_grants([0, 1], {0: "fedstream-fl.m.silo-0", 1: "fedstream-fl.m.silo-1"})

    # Assert: what a side grants in its namespace it owns (except the shared prefixes a
    # namespaced deployment also uses, which belong to "" only), and never the other side's
    namespaced = [g for g in stream if g.name.startswith("t1.")]
    assert namespaced and all(owned_by_stream(g, "t1", [0, 1]) for g in namespaced)
    assert all(owned_by_fl(g, [0, 1]) for g in fl)
    assert not any(owned_by_stream(g, "", [0, 1]) for g in fl)
    assert not any(owned_by_fl(g, [0, 1]) for g in stream)


def test_stale_candidates_are_removed_principals_only() -> None:
    # a silo that left the deployment: its grants are the stream side's to delete
    gone = Grant("silo-2", "TOPIC", "silo.2.", "READ", True)
    assert owned_by_stream(gone, "", [0, 1])
    assert not owned_by_stream(gone, "", [0, 1, 2])
    # fl up for silos 0 and 1 manages their groups (an old model's) and the server's,
    # not another deployment's silo nor another namespace's tenant
    assert owned_by_fl(Grant("silo-0", "GROUP", "fedstream-fl.old.silo-0", "READ"), [0, 1])
    assert owned_by_fl(Grant(FL_SERVER, "TOPIC", "fl.metrics", "WRITE"), [0])
    assert not owned_by_fl(Grant("silo-900", "GROUP", "fedstream-fl.b.silo-900", "READ"), [0])
    assert not owned_by_stream(Grant("tenant-x", "TOPIC", "t2.chatbot.x.requests", "WRITE"),
                               "t1", [0])  # fmt: skip
    assert not owned_by_stream(Grant("admin", "TOPIC", "bank.customers", "READ"), "", [0])
