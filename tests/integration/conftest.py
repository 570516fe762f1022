"""Session fixtures for integration tests: a REAL Kafka broker, never a mock.

The broker is started through the project's own manager (`app.kafka.broker.LocalBroker`) in a
temporary data directory on free ports, or an existing broker is used when
``FEDSTREAM_TEST_BOOTSTRAP`` names one. If neither works the tests FAIL; they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.kafka.broker import LocalBroker, wait_for_broker
from app.ports import free_port
from app.settings import default_cache_dir


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("FEDSTREAM_TEST_BOOTSTRAP")
    if existing:
        wait_for_broker(existing, timeout_s=30)
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka-data")
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(data_dir, cache, port=free_port(), controller_port=free_port())
    broker.start(timeout_s=180)  # raises BrokerError -> every dependent test errors (fails)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names of one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test alone, started now (no group or topic on it yet)."""
    cache = Path(os.environ.get("FEDSTREAM_CACHE_DIR", default_cache_dir()))
    broker = LocalBroker(tmp_path / "own-kafka", cache, port=free_port(),
                         controller_port=free_port())  # fmt: skip
    broker.start(timeout_s=180)
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
