"""Session fixtures for integration tests: a REAL Kafka broker, never a mock.

The broker is started through the project's own manager (`app.kafka.broker.LocalBroker`) in a
temporary data directory on free ports, secure as a user runs it (SASL_SSL with SCRAM, the
StandardAuthorizer, no ACL = deny, no topic auto-creation), or an existing broker is used
when ``FEDSTREAM_TEST_BOOTSTRAP`` names one (with ``FEDSTREAM_TEST_KAFKA_CLIENTS``: the
directory of its principals' client configs, if it is secure). If neither works the tests
FAIL; they are never skipped.

The test process acts as the admin; ``fedstream`` subprocesses find the principals'
client configs through ``FEDSTREAM_KAFKA_CLIENTS`` and act as their command's principal
(the worker as ``worker``, producers as ``bank``, ``ask`` as its tenant, ClientApps as
their silo). The ACLs of each test's namespace come with its topics (``provision``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.kafka.broker import LocalBroker, wait_for_broker
from app.kafka.principals import ADMIN, principal_names
from app.kafka.security import read_client_config, use
from app.ports import free_port
from app.settings import default_cache_dir
from topics import chat_tenants


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("FEDSTREAM_TEST_BOOTSTRAP")
    if existing:
        clients = os.environ.get("FEDSTREAM_TEST_KAFKA_CLIENTS")
        if clients:
            _act_as_admin(Path(clients))
        wait_for_broker(existing, timeout_s=30)
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka-data")
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    principals = principal_names([0, 1, 2], chat_tenants((0, 1, 2)))
    broker = LocalBroker(
        data_dir, cache, port=free_port(), controller_port=free_port(), principals=principals
    )
    broker.start(timeout_s=180)  # raises BrokerError -> every dependent test errors (fails)
    _act_as_admin(broker.clients_dir)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _act_as_admin(clients: Path) -> None:
    os.environ["FEDSTREAM_KAFKA_CLIENTS"] = str(clients)  # for fedstream subprocesses
    use(read_client_config(clients / f"{ADMIN}.conf"))


@pytest.fixture(scope="session")
def kafka_clients(kafka_bootstrap: str) -> Path:
    """The directory of the test broker's principals' client configs."""
    return Path(os.environ["FEDSTREAM_KAFKA_CLIENTS"])


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names of one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def fresh_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broker of this test alone, started now (no group or topic on it yet), secure; the
    test process and its fedstream subprocesses act on it (FEDSTREAM_KAFKA_CLIENTS)."""
    import app.kafka.security

    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(tmp_path / "own-kafka", cache, port=free_port(),
                         controller_port=free_port())  # fmt: skip
    broker.start(timeout_s=180)
    monkeypatch.setenv("FEDSTREAM_KAFKA_CLIENTS", str(broker.clients_dir))
    monkeypatch.setattr(app.kafka.security, "_current", broker.identity())
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Path]:
    """The data dir of a local Flower deployment that is torn down whatever happens."""
    from tests.integration.fl_support import tear_down

    try:
        yield tmp_path
    finally:
        tear_down(tmp_path)
