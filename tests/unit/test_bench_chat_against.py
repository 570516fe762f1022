"""bench chat --against: arm order, pooled costs, a reference revision's Reply, and a leg
beside a reference tree."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import chat_leg
from bench.against import export_revision
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


def test_a_leg_loads_this_trees_bench_beside_the_tree_before_kafka_security(
    tmp_path: Path,
) -> None:
    # Prepare: f1f0fe1, the chat path before issue 12 (the README's reference), first on
    # PYTHONPATH as `bench chat --against` puts it; it has no app.kafka.security
    tree = export_revision("f1f0fe1", tmp_path)
    assert not (tree / "app" / "kafka" / "security.py").exists()
    leg = Path(chat_leg.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('leg', {str(leg)!r})\n"
        "leg = importlib.util.module_from_spec(spec); spec.loader.exec_module(leg)\n"
        "chat = leg.load_bench_chat()\n"
        "print(callable(chat.run_bench), chat.__name__)\n"
    )

    # Execute
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tmp_path,
                          timeout=120)  # fmt: skip

    # Assert: every import of this tree's bench chat resolves against that tree
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "fedstream_bench_chat_leg"]
