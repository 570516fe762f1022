"""bench stream --against: leg order, ratios and spreads; the worker's CPU sampler."""

from __future__ import annotations

import os

from bench.against import leg_order, summarize_legs
from bench.cpu import CpuSampler, process_cpu_s


def _leg(rate: float, cpu_us: float | None) -> dict[str, float | None]:
    main = None if cpu_us is None else cpu_us / 2
    return {"worker_events_per_s": rate, "worker_cpu_us_per_event": cpu_us,
            "worker_main_thread_cpu_us_per_event": main}  # fmt: skip


def test_legs_alternate_abba() -> None:
    # Execute
    order = [name for _r, name in leg_order(3)]

    # Assert
    assert order == ["reference", "this", "this", "reference", "reference", "this"]


def test_summary_gives_ratios_of_medians_pairs_and_spreads() -> None:
    # Prepare: this worker is faster and cheaper in every pair
    runs = {
        "reference": [_leg(1000, 400.0), _leg(500, 420.0), _leg(800, 410.0)],
        "this": [_leg(1200, 300.0), _leg(600, 330.0), _leg(1000, None)],
    }

    # Execute
    doc = summarize_legs(runs)

    # Assert
    assert doc["vs_reference"] == 1.25  # medians 1000 / 800
    assert doc["paired_vs_reference"] == [1.2, 1.2, 1.25]
    assert doc["cpu_vs_reference"] == round(410.0 / 315.0, 3)  # a leg without CPU is left out
    assert doc["paired_cpu_vs_reference"] == [round(400 / 300, 3), round(420 / 330, 3)]
    assert doc["main_thread_cpu_vs_reference"] == doc["cpu_vs_reference"]
    assert doc["spread"]["reference"] == {"events_per_s": 2.0, "cpu_us_per_event": 1.05}


def test_summary_pairs_latency_of_legs_that_measured_it() -> None:
    # Prepare: both workers paced alike; this one answers in half the time
    ref = [_leg(1000, 400.0) | {"latency_ms": {"p50": 1000.0, "p90": 1.0, "p99": 3000.0}},
           _leg(1000, 400.0) | {"latency_ms": {}}]  # fmt: skip
    this = [_leg(1000, 400.0) | {"latency_ms": {"p50": 500.0, "p90": 1.0, "p99": 1000.0}},
            _leg(1000, 400.0) | {"latency_ms": {"p50": 800.0, "p99": 900.0}}]  # fmt: skip

    # Execute
    doc = summarize_legs({"reference": ref, "this": this})

    # Assert: a leg without a latency phase makes no pair
    assert doc["paired_latency_vs_reference"] == {"p50": [2.0], "p99": [3.0]}
    assert doc["reference_latency_ms"][0] == {"p50": 1000.0, "p99": 3000.0}
    assert doc["this_latency_ms"][1] == {"p50": 800.0, "p99": 900.0}


def test_cpu_sampler_sees_this_process_burn_cpu() -> None:
    # Prepare
    assert process_cpu_s(os.getpid()) is not None
    assert process_cpu_s(2**22 + 12345) is None  # no such process

    # Execute: busy for a while under the sampler
    with CpuSampler(os.getpid(), interval_s=0.01) as cpu:
        x = 0
        while len(cpu.samples) < 20:
            x += sum(range(1000))

    # Assert: the CPU spent between the first and last sample is positive and
    # the interpolation stays inside the samples
    first, last = cpu.samples[0][0], cpu.samples[-1][0]
    spent = cpu.between(first, last)
    assert spent is not None and spent > 0
    assert cpu.between(first - 1000, last) is None
    mid = cpu.at((first + last) / 2)
    assert mid is not None and cpu.samples[0][1] <= mid <= cpu.samples[-1][1]
