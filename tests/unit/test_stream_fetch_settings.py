"""The worker's fetch settings reach aiokafka's Fetcher (they are set on private attributes)."""

from __future__ import annotations

import inspect

from aiokafka import AIOKafkaConsumer

from app.stream.loop_agents import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES


def test_aiokafka_start_reads_the_attributes_the_worker_sets() -> None:
    # Prepare: tune_fetch_wait sets these two on each Faust worker consumer before start()
    source = inspect.getsource(AIOKafkaConsumer.start)

    # Assert: start() hands both to its Fetcher; if this fails the settings do nothing
    assert "fetch_min_bytes=self._fetch_min_bytes" in source
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source
    assert FETCH_MIN_BYTES > 1 and FETCH_MAX_WAIT_MS < 100
