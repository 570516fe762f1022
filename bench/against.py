"""``bench stream --against REV``: this worker and the worker of another revision, like for like.

The tree of git revision ``REV`` is exported to a temporary directory and put first on the
worker's ``PYTHONPATH`` (same virtualenv); both workers then drain the same seeded backlog
on the same broker, ``rounds`` pairs of legs in ABBA order (reference, this; this,
reference; ...) so that neither always runs on the quieter half of a drifting load.

Two figures per leg: the wall-clock rate (``worker_events_per_s``: what a user sees, but on
a shared box mostly a measure of the others' load) and the worker's own CPU time per event
(``worker_cpu_us_per_event``, :mod:`bench.cpu`: what the worker costs; also of its main
thread alone, which bounds the rate when the box is busy); with a latency phase also its
p50 / p99 (``paired_latency_vs_reference``: reference / this per pair, above 1 means this
worker answers sooner; pace both with ``--latency-rate``). The summary gives
each one's ratio of medians (``vs_reference``, ``cpu_vs_reference``: above 1 means this
worker is faster / cheaper), the median of the per-pair ratios, and the spread (max/min
of one worker's legs) that says how far to trust them.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["compare_revisions", "export_revision", "leg_order", "summarize_legs"]

logger = logging.getLogger(__name__)

WORKERS = ("reference", "this")


def export_revision(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` of this repository, exported under ``into``."""
    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    tree = into / f"reference-{commit[:12]}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    print(f"reference worker: {rev} = {commit[:12]} exported to {tree}")
    return tree


def leg_order(rounds: int) -> list[tuple[int, str]]:
    """``(round, worker)`` of every leg, ABBA: reference first in even rounds."""
    legs = []
    for r in range(rounds):
        for name in WORKERS if r % 2 == 0 else WORKERS[::-1]:
            legs.append((r, name))
    return legs


def _ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 3) if num and den else None


def _spread(values: list[float]) -> float | None:
    return round(max(values) / min(values), 3) if values and min(values) > 0 else None


def summarize_legs(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Ratios of medians, median of per-pair ratios and spreads (module docstring)."""
    rate = {k: [float(r["worker_events_per_s"]) for r in v] for k, v in runs.items()}
    cpu = {k: [float(c) for r in v if (c := r.get("worker_cpu_us_per_event"))]
           for k, v in runs.items()}  # fmt: skip
    med = {k: statistics.median(v) if v else None for k, v in rate.items()}
    cpu_med = {k: statistics.median(v) if v else None for k, v in cpu.items()}
    pairs = list(zip(runs["reference"], runs["this"], strict=False))
    paired_rate = [_ratio(t["worker_events_per_s"], r["worker_events_per_s"]) for r, t in pairs]
    paired_cpu = [_ratio(r.get("worker_cpu_us_per_event"), t.get("worker_cpu_us_per_event"))
                  for r, t in pairs]  # fmt: skip
    main = {k: [float(c) for r in v if (c := r.get("worker_main_thread_cpu_us_per_event"))]
            for k, v in runs.items()}  # fmt: skip
    main_med = {k: statistics.median(v) if v else None for k, v in main.items()}
    lat = {k: [r.get("latency_ms") or {} for r in v] for k, v in runs.items()}
    lat_pairs = list(zip(lat["reference"], lat["this"], strict=False))
    paired_lat = {q: [x for r, t in lat_pairs if (x := _ratio(r.get(q), t.get(q))) is not None]
                  for q in ("p50", "p99")}  # fmt: skip
    return {
        "reference_events_per_s": [round(x) for x in rate["reference"]],
        "this_events_per_s": [round(x) for x in rate["this"]],
        "vs_reference": _ratio(med["this"], med["reference"]),
        "paired_vs_reference": [x for x in paired_rate if x is not None],
        "reference_cpu_us_per_event": cpu["reference"],
        "this_cpu_us_per_event": cpu["this"],
        "cpu_vs_reference": _ratio(cpu_med["reference"], cpu_med["this"]),
        "paired_cpu_vs_reference": [x for x in paired_cpu if x is not None],
        "reference_main_thread_cpu_us_per_event": main["reference"],
        "this_main_thread_cpu_us_per_event": main["this"],
        "main_thread_cpu_vs_reference": _ratio(main_med["reference"], main_med["this"]),
        "reference_latency_ms": [{q: x.get(q) for q in ("p50", "p99")} for x in lat["reference"]],
        "this_latency_ms": [{q: x.get(q) for q in ("p50", "p99")} for x in lat["this"]],
        "paired_latency_vs_reference": paired_lat,
        "spread": {
            k: {"events_per_s": _spread(rate[k]), "cpu_us_per_event": _spread(cpu[k])}
            for k in WORKERS
        },
    }


def compare_revisions(
    run: Callable[..., dict[str, Any]], rev: str, rounds: int, work: Path, **knobs: Any
) -> dict[str, Any]:
    """This worker vs the worker of ``rev`` (module docstring); ``run`` is ``run_bench``."""
    tree = export_revision(rev, work)
    env = {"PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in WORKERS}
    for r, name in leg_order(rounds):
        print(f"--- round {r + 1}/{rounds}: {name} worker")
        worker_env = env if name == "reference" else None
        with tempfile.TemporaryDirectory(prefix="fedstream-bench-", dir=work) as tmp:
            runs[name].append(run(work_dir=Path(tmp), worker_env=worker_env, **knobs))
    summary = summarize_legs(runs)
    return {
        "against": rev,
        "rounds": rounds,
        **summary,
        "target_vs_reference": 1.0,
        "target_met": bool(summary["vs_reference"]) and summary["vs_reference"] >= 1.0,
        "reference": runs["reference"],
        "this": runs["this"],
    }
