"""Kafka's murmur2 partitioner in pure Python (checked against the real librdkafka in
tests/integration/test_partitioning.py)."""

from __future__ import annotations

import pytest

from app.features.partitioning import murmur2, partition_for


def test_murmur2_matches_kafkas_published_values() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka's UtilsTest), as int32
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}  # fmt: skip
    for key, want in cases.items():
        got = murmur2(key)
        assert (got - (1 << 32) if got >= 1 << 31 else got) == want, key


def test_partition_for_is_in_range_and_stable() -> None:
    keys = [f"cust-{i:06d}".encode() for i in range(1000)]
    parts = [partition_for(k, 4) for k in keys]
    assert set(parts) == {0, 1, 2, 3} and parts == [partition_for(k, 4) for k in keys]
    with pytest.raises(ValueError):
        partition_for(b"x", 0)
