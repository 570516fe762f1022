"""A silo whose site runs its own Kafka cluster (issue 12, item 7), with REAL processes.

Silo A's data is on the operator's broker (the session's); silo B's site has a broker of
its own, with its own CA and its own ``silo-<B>`` principal, and the operator never
touches it: ``fl up --silo-kafka B=<the site's client config>`` gives that SuperNode the
site's cluster as its per-node Kafka setting. A finite run of two rounds trains on both
silos, and silo B's SuperNode relays each global model onto the site's own
``fl.model.global`` as the site's ``site-<B>`` principal, which may write that topic and
nothing else: round 1's with the train message of round 2, round 2's (the run's last) with
the server's final confirm-only message, the only message after round 2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import KafkaError, Producer

from app.fl.kafka_io import read_models, silo_group
from app.kafka.access import granted
from app.kafka.admin import make_admin
from app.kafka.broker import LocalBroker
from app.kafka.principals import Grant, silo_principal, site_principal
from app.kafka.provision import provision
from app.kafka.security import KafkaIdentity, acting_as, client_config, read_client_config
from app.model.frame import ModelFrame, decode_model
from app.ports import free_port
from app.settings import default_cache_dir
from tests.integration.fl_support import (
    committed_frames,
    run_config,
    seed_silos,
    silo_ids,
    start_flower,
    wait_rounds,
)
from topics import MODEL_GLOBAL, silo_batches

pytestmark = pytest.mark.integration

ROWS = 300


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The site's own secure broker (own data dir, CA and credentials); the test process
    keeps acting on the operator's broker."""
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(tmp_path / "site", cache, port=free_port(), controller_port=free_port())
    broker.start(timeout_s=180)
    try:
        yield broker
    finally:
        broker.stop()


def test_a_silo_trains_from_its_own_sites_cluster(
    kafka_bootstrap: str, unique: str, deployment: Path, site_broker: LocalBroker
) -> None:
    # Prepare: silo a on the operator's broker; silo b's topic, data and group grant on
    # the site's broker, set up by the site's own admin
    a, b = silo_ids(unique, 960, 30, n=2)
    spec, model = f"spec-{unique}", f"fl-site-{unique}"
    seed_silos(kafka_bootstrap, [a], spec, 2 * ROWS, frame_rows=ROWS)  # a frame per round
    site_admin = site_broker.identity()
    with acting_as(site_admin):
        seed_silos(site_broker.bootstrap, [b], spec, 2 * ROWS, frame_rows=ROWS)
        provision(site_broker.bootstrap, "", [b], (), {b: silo_group(model, b)}, stream=False,
                  sites=[b])  # fmt: skip
    site_conf = site_broker.clients_dir / f"{silo_principal(b)}.conf"
    assert (
        read_client_config(site_conf).ca
        != read_client_config(Path(os.environ["FEDSTREAM_KAFKA_CLIENTS"]) / "admin.conf").ca
    )  # another cluster, another CA

    # Execute: a run of two rounds
    dep = start_flower(deployment, kafka_bootstrap, [a, b],
                       run_config(spec, model, num_rounds=2, min_nodes=2, max_rows_per_round=ROWS),
                       site_kafka={b: site_conf})  # fmt: skip
    docs = wait_rounds(kafka_bootstrap, model, 2, timeout_s=240)

    # round 2's train message relays round 1's model; the final confirm-only message, the
    # only one after round 2, relays round 2's (each after committing what it confirmed)
    relayed = {r: _site_frame(site_broker.bootstrap, site_admin, model, round_=r, timeout_s=120)
               for r in (1, 2)}  # fmt: skip

    # Assert: both silos trained in both rounds; silo b read (and committed both frames,
    # the second on the final confirmation) on its site's cluster as its site principal;
    # its topic never existed on the operator's broker
    for doc in docs:
        rows = {int(s): e["rows"] for s, e in doc["silos"].items()}
        assert rows.get(a, 0) > 0 and rows.get(b, 0) > 0, doc["silos"]
    node_b = " ".join(dep.commands[f"supernode-{b}"])
    assert f"bootstrap='{site_broker.bootstrap}'" in node_b and str(site_conf) in node_b
    with acting_as(site_admin):
        assert committed_frames(site_broker.bootstrap, model, b) == 2
    operator_topics = make_admin(kafka_bootstrap).list_topics(timeout=10).topics
    assert silo_batches(b) not in operator_topics

    # Assert: the site's fl.model.global has the global models of rounds 1 and 2, each the
    # operator's frame in every weight; only fl-server publishes on the operator's cluster
    operators = [decode_model(v) for v in read_models(kafka_bootstrap, model)]
    for round_, frame in relayed.items():
        published = next(f for f in operators if f.meta.round == round_)
        assert len(frame.arrays) == len(published.arrays) > 0
        pairs = zip(frame.arrays, published.arrays, strict=True)
        assert all(np.array_equal(x, y) for x, y in pairs)
        assert np.array_equal(frame.mean, published.mean)
        assert np.array_equal(frame.std, published.std)
        for field in ("model_version", "spec_version", "n_features", "config"):
            assert getattr(frame.meta, field) == getattr(published.meta, field), (round_, field)
        assert frame.meta.metrics == {"relayed_by": site_principal(b)}  # no other silo's figures
    assert relayed[1].meta.model_version != relayed[2].meta.model_version
    assert not any("relayed_by" in f.meta.metrics for f in operators)

    # Assert: the relay holds exactly WRITE (+DESCRIBE) on the site's model topic; writing
    # anything else there is refused; the operator's cluster has no site principal
    with acting_as(site_admin):
        site_acls = {g for g in granted(make_admin(site_broker.bootstrap))
                     if g.principal == site_principal(b)}  # fmt: skip
    assert site_acls == {Grant(site_principal(b), "TOPIC", MODEL_GLOBAL, op)
                         for op in ("WRITE", "DESCRIBE")}  # fmt: skip
    relay = read_client_config(site_broker.clients_dir / f"{site_principal(b)}.conf")
    refused = _write_error(site_broker.bootstrap, relay, silo_batches(b))
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not any(g.principal.startswith("site-") for g in granted(make_admin(kafka_bootstrap)))


def _site_frame(
    bootstrap: str, admin: KafkaIdentity, model: str, round_: int, timeout_s: float
) -> ModelFrame:
    """The first frame of ``model`` at ``round_`` on the site's model topic (as its admin)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with acting_as(admin):
            frames = [decode_model(v) for v in read_models(bootstrap, model)]
        found = [f for f in frames if f.meta.round == round_]
        if found:
            return found[0]
        time.sleep(2)
    raise AssertionError(f"no model of round {round_} on the site's cluster in {timeout_s:.0f} s")


def _write_error(bootstrap: str, ident: KafkaIdentity, topic: str) -> KafkaError | None:
    """The delivery error of one record written to ``topic`` as ``ident`` (None: written)."""
    errors: list[KafkaError] = []
    producer = Producer(client_config(bootstrap, ident, **{"message.timeout.ms": 15000}))
    producer.produce(topic, b"x", on_delivery=lambda err, _m: errors.append(err) if err else None)
    producer.flush(30)
    return errors[0] if errors else None
