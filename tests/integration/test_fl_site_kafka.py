"""A silo whose site runs its own Kafka cluster (issue 12, item 7), with REAL processes.

Silo A's data is on the operator's broker (the session's); silo B's site has a broker of
its own, with its own CA and its own ``silo-<B>`` principal, and the operator never
touches it: ``fl up --silo-kafka B=<the site's client config>`` gives that SuperNode the
site's cluster as its per-node Kafka setting. One round trains on both silos.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.fl.kafka_io import silo_group
from app.kafka.admin import make_admin
from app.kafka.broker import LocalBroker
from app.kafka.principals import silo_principal
from app.kafka.provision import provision
from app.kafka.security import acting_as, read_client_config
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
from topics import silo_batches

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
    seed_silos(kafka_bootstrap, [a], spec, ROWS)
    site_admin = site_broker.identity()
    with acting_as(site_admin):
        seed_silos(site_broker.bootstrap, [b], spec, ROWS)
        provision(site_broker.bootstrap, "", [b], (), {b: silo_group(model, b)}, stream=False)
    site_conf = site_broker.clients_dir / f"{silo_principal(b)}.conf"
    assert (
        read_client_config(site_conf).ca
        != read_client_config(Path(os.environ["FEDSTREAM_KAFKA_CLIENTS"]) / "admin.conf").ca
    )  # another cluster, another CA

    # Execute
    dep = start_flower(deployment, kafka_bootstrap, [a, b],
                       run_config(spec, model, min_nodes=2, max_rows_per_round=ROWS),
                       site_kafka={b: site_conf})  # fmt: skip
    docs = wait_rounds(kafka_bootstrap, model, 1, timeout_s=180)

    # Assert: both silos trained in the round; silo b read (and committed) on its site's
    # cluster as its site principal; its topic never existed on the operator's broker
    rows = {int(s): e["rows"] for s, e in docs[0]["silos"].items()}
    assert rows.get(a, 0) > 0 and rows.get(b, 0) > 0, docs[0]["silos"]
    node_b = " ".join(dep.commands[f"supernode-{b}"])
    assert f"bootstrap='{site_broker.bootstrap}'" in node_b and str(site_conf) in node_b
    with acting_as(site_admin):
        assert committed_frames(site_broker.bootstrap, model, b) > 0
    operator_topics = make_admin(kafka_bootstrap).list_topics(timeout=10).topics
    assert silo_batches(b) not in operator_topics
