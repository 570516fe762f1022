"""bench chat --against: arm order, pooled costs, and a reference revision's Reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.chat import split_latencies
from bench.chat_against import arm_order, summarize_arms


def _leg(latencies: list[float], cpu: float) -> dict[str, Any]:
    return {"result": {"chat_p50_ms": latencies[len(latencies) // 2],
                       "worker_cpu_ms_per_1k": cpu, "load_avg": [1.0, 1.0]},
            "samples": {"total": latencies}}  # fmt: skip


def test_arms_run_in_mirrored_rounds_after_one_warm_up_each() -> None:
    # Execute
    legs = arm_order(2, warmup=True)

    # Assert
    assert legs[:3] == [("reference", True), ("insecure", True), ("secure", True)]
    assert [a for a, w in legs[3:]] == ["reference", "insecure", "secure",
                                        "secure", "insecure", "reference"]  # fmt: skip
    assert not any(w for _a, w in legs[3:])


def test_costs_come_from_pooled_replies_of_each_arm() -> None:
    # Prepare: secure 20 % slower than the reference at every percentile, insecure 10 %
    base = [float(x) for x in range(1, 101)]
    slow = [x * 1.2 for x in base]
    legs = {
        "reference": [_leg(base[:50], 600.0), _leg(base[50:], 700.0)],
        "insecure": [_leg([x * 1.1 for x in base], 500.0)],
        "secure": [_leg(slow[:50], 550.0), _leg(slow[50:], 650.0)],
    }

    # Execute
    doc = summarize_arms(legs)

    # Assert
    assert doc["pooled"]["reference"]["n"] == 100  # both legs together
    assert doc["vs_reference"]["insecure"] == {"p50": 0.1, "p95": 0.1, "p99": 0.1}
    assert doc["vs_reference"]["secure"] == {"p50": 0.2, "p95": 0.2, "p99": 0.2}
    assert doc["security_cost"]["p50"] == round(1.2 / 1.1 - 1, 3)
    assert doc["leg_medians"]["secure"]["worker_cpu_ms_per_1k"] == 600.0
    assert doc["target_met"] is False  # secure is 20 % over the reference, target 10 %


def test_split_latencies_takes_a_reply_without_halves() -> None:
    # Prepare: f1f0fe1's Reply has no from_worker_s
    @dataclass
    class OldReply:
        request_id: str
        value: bytes
        latency_s: float

    # Execute
    parts = split_latencies([OldReply("a", b"{}", 0.004)])  # type: ignore[list-item]

    # Assert
    assert parts == {"total": [4.0], "to_worker": [], "from_worker": []}
