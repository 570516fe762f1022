"""The security comparison's leg order and arithmetic (bench.security), without brokers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bench.security
from app.kafka.security import PLAINTEXT
from bench.security import TemporaryBroker, compare_security, leg_order, summarize


def test_legs_alternate_abba_after_a_warmup_pair() -> None:
    # Prepare / Execute
    legs = leg_order(repeats=3, warmup=True)

    # Assert: the warm-up pair first, then neither mode always first
    assert legs[:2] == [("insecure", True), ("secure", True)]
    measured = [mode for mode, warm in legs if not warm]
    assert measured == ["insecure", "secure", "secure", "insecure", "insecure", "secure"]
    assert leg_order(repeats=2, warmup=False) == [
        ("insecure", False), ("secure", False), ("secure", False), ("insecure", False)
    ]  # fmt: skip


@pytest.mark.parametrize("per_leg", [False, True])
def test_brokers_are_one_per_mode_or_one_per_leg_and_only_the_legs_is_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, per_leg: bool
) -> None:
    # Prepare: broker starts are recorded instead of run (the orchestration is pure code)
    up: list[str] = []
    started: list[str] = []

    @contextlib.contextmanager
    def fake_started(cache_dir: Path, secure: bool, silos: int) -> Iterator[TemporaryBroker]:
        name = f"{'secure' if secure else 'insecure'}-{len(started)}"
        started.append(name)
        up.append(name)
        try:
            yield TemporaryBroker(name, secure, PLAINTEXT, tmp_path)
        finally:
            up.remove(name)

    monkeypatch.setattr(bench.security, "_started", fake_started)
    seen: list[tuple[str, bool, list[str]]] = []

    def run(bootstrap: str, secure: bool) -> dict[str, Any]:
        seen.append((bootstrap, secure, list(up)))
        return {"ms": 1.0}

    # Execute
    doc = compare_security(run, tmp_path, {"ms": False}, repeats=2, warmup=True,
                           broker_per_leg=per_leg)  # fmt: skip

    # Assert: every leg ran on a broker of its own mode
    assert [secure for _, secure, _ in seen] == [False, True, False, True, True, False]
    assert all(b.startswith("secure" if s else "insecure") for b, s, _ in seen)
    assert up == []  # all stopped
    if per_leg:
        assert len(started) == 6 and len({b for b, _, _ in seen}) == 6
        assert all(others == [b] for b, _, others in seen)  # the only broker up
        assert doc["brokers"] == "one per leg"
    else:
        assert started == ["insecure-0", "secure-1"]
        assert all(sorted(others) == ["insecure-0", "secure-1"] for _, _, others in seen)
        assert doc["brokers"] == "one per mode"


def test_costs_come_from_medians_and_pairs() -> None:
    # Prepare: a latency (lower is better) and a throughput (higher is better); one
    # outlier leg of the secure mode that a median must ignore
    runs = {
        "insecure": [{"ms": 10.0, "eps": 1000}, {"ms": 12.0, "eps": 900}, {"ms": 11.0, "eps": 950}],
        "secure": [{"ms": 11.0, "eps": 990}, {"ms": 60.0, "eps": 850}, {"ms": 12.1, "eps": 940}],
    }

    # Execute
    doc = summarize(runs, {"ms": False, "eps": True})

    # Assert
    assert doc["insecure"] == {"ms": 11.0, "eps": 950}
    assert doc["secure"] == {"ms": 12.1, "eps": 940}
    assert doc["security_cost"] == {"ms": 0.1, "eps": round(10 / 950, 3)}
    # pairs: ms costs 0.1, 4.0, 0.1 -> median 0.1; eps costs 0.01, 0.056, 0.011 -> 0.011
    assert doc["paired_cost"] == {"ms": 0.1, "eps": 0.011}
    assert doc["security_target_met"] is True
    assert doc["legs"]["secure"][1] == {"ms": 60.0, "eps": 850.0}
    # spread: secure ms (60 - 11) / 12.1; insecure eps (1000 - 900) / 950 vs secure 140 / 940
    assert doc["spread"] == {"ms": round(49 / 12.1, 3), "eps": round(140 / 940, 3)}
    assert doc["above_noise"] == []


def test_a_cost_larger_than_the_spread_between_legs_is_above_noise() -> None:
    runs = {"insecure": [{"ms": 10.0}, {"ms": 11.0}], "secure": [{"ms": 15.0}, {"ms": 16.0}]}

    doc = summarize(runs, {"ms": False})

    assert doc["security_cost"] == {"ms": 0.476} and doc["spread"]["ms"] < 0.1
    assert doc["above_noise"] == ["ms"] and doc["security_target_met"] is False


def test_a_missing_figure_fails_the_target() -> None:
    runs = {"insecure": [{"ms": 10.0}], "secure": [{"other": 1.0}]}

    doc = summarize(runs, {"ms": False})

    assert doc["security_cost"] == {"ms": None}
    assert doc["security_target_met"] is False


def test_chat_latency_halves_are_split_by_the_replys_create_time_and_pooled_per_mode() -> None:
    # Prepare: two replies with the worker's produce time, one without (no CreateTime)
    from app.stream.ask import Reply
    from bench.chat import pooled_latencies, split_latencies

    replies = [Reply("a", {}, 0.010, 0.004), Reply("b", {}, 0.020, 0.002), Reply("c", {}, 0.030)]

    # Execute
    parts = split_latencies(replies)
    pooled = pooled_latencies(
        {False: [{}, {k: list(v) for k, v in parts.items()}],  # first leg: the warm-up
         True: [{"total": [1e6]}, {"total": [20.0], "to_worker": [10.0], "from_worker": [5.0]}]},
        warmup=True,
    )  # fmt: skip

    # Assert: the halves add up to the whole; the one without a timestamp only in the total
    assert parts["total"] == pytest.approx([10.0, 20.0, 30.0])
    assert parts["from_worker"] == pytest.approx([4.0, 2.0])
    assert parts["to_worker"] == pytest.approx([6.0, 18.0])
    assert pooled["insecure"]["n"] == 3 and pooled["secure"]["n"] == 1  # warm-up left out
    assert pooled["security_cost"]["p50"] == pytest.approx(0.0)
    halves = pooled["halves"]
    assert halves["from_worker"]["insecure"]["p50"] == pytest.approx(3.0)
    assert halves["from_worker"]["security_cost"]["p50"] == pytest.approx(2 / 3, abs=1e-3)
    assert halves["to_worker"]["secure"]["p50"] == pytest.approx(10.0)


def test_the_broker_cpu_is_read_only_while_acting_on_a_broker(tmp_path: Path) -> None:
    # Prepare: "the broker" is this test process (its CPU time is what process_cpu_s reads)
    broker = TemporaryBroker("b:1", False, PLAINTEXT, tmp_path, pid=os.getpid())

    # Execute
    outside = bench.security.broker_cpu_s()
    with bench.security.acting_on(broker):
        first = bench.security.broker_cpu_s()
        sum(i * i for i in range(3_000_000))  # spend ~0.2 s of CPU (ticks are 10 ms)
        second = bench.security.broker_cpu_s()
    after = bench.security.broker_cpu_s()

    # Assert
    assert outside is None and after is None
    assert first is not None and second is not None and second > first
