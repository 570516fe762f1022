"""A window plan compiled to straight-line Python: the runner's per-row hot path (pure code).

:class:`~app.pipeline.windows.WindowPlan` states the semantics generically: per row it
loops over the plan's windows, aggregations and bucket slots. That generality cost about
as much as the rest of a row's processing, because every slot is a trip through a Python
loop. :func:`compile_plan` writes, once per plan, the source of two functions for exactly
that plan's windows and aggregations (constants and slot numbers inlined, one pass over
the key's buckets for every window at once, as :func:`app.features.windows.snapshot`
does by hand for the two built-in windows) and ``exec``'s it:

* ``snapshot(state, ts, row, uid)``: the outputs of one event from the state before it,
  exactly :meth:`WindowPlan.snapshot` (same sums in the same order, so equal floats), or
  ``None`` when ``uid`` (the ``unique`` column's value) is already in a retained bucket:
  the repeat check of :meth:`WindowPlan.admit` rides on the same pass;
* ``update(state, ts, row, uid)``: :meth:`WindowPlan.update`.

The generic methods stay the definition; ``tests/unit/test_pipeline_window_code.py``
checks the compiled functions against them on random event streams.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.features.windows import prune_buckets, union_of
from app.pipeline.windows import KeyWindows, WindowPlan

__all__ = ["CompiledPlan", "compile_plan", "plan_source"]

logger = logging.getLogger(__name__)

Snapshot = Callable[[KeyWindows, float, Any, Any], "list[float] | None"]
Update = Callable[[KeyWindows, float, Any, Any], None]


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    """The two functions of one plan (module docstring) and their source (for reading)."""

    snapshot: Snapshot
    update: Update
    source: str


def _bounds(i: int, kind: str, size: int, every: int) -> list[str]:
    """Source lines computing ``lo{i}``, ``hi{i}`` like :meth:`Window.bounds`."""
    if kind == "tumbling":
        return [f"lo{i} = (ts // {size}) * {size}", f"hi{i} = lo{i} + {size}"]
    return [f"hi{i} = (ts // {every}) * {every} + {every}", f"lo{i} = hi{i} - {size}"]


def _snapshot_source(plan: WindowPlan) -> list[str]:
    s_n, m_n = len(plan.sum_cols), len(plan.max_cols)
    d0, slot = plan._d0, plan._last
    sized = [i for i, (_n, w) in enumerate(plan.windows) if w.kind != "alltime"]
    kinds = {how for outs in plan._outputs for how, _j in outs}
    need_gap = 6 in kinds
    check_ids = plan.unique is not None and bool(plan.longest)
    lines = ["def snapshot(state, ts, row, uid):", "    buckets = state.buckets"]
    body: list[str] = []
    for i in sized:
        w = plan.windows[i][1]
        body += _bounds(i, w.kind, w.size_s, w.every_s)
        body.append(f"c{i} = 0")
        body += [f"a{i}_{j} = 0.0" for j in range(1, d0)]
        body += [f"d{i}_{j} = []" for j in range(d0, slot)]
    if need_gap and plan.longest:
        body += ["prev = None", "inside = False"]
    loop: list[str] = []
    if check_ids:
        loop += [f"if uid in b[{slot + 1}]:", "    return None"]
    if need_gap and plan.longest:
        loop += [
            f"last = b[{slot}]",
            "if last <= ts:",
            "    if prev is None or last > prev:",
            "        prev = last",
            "elif start <= ts:",
            "    inside = True",
        ]
    for i in sized:
        loop.append(f"if lo{i} <= start < hi{i}:")
        inner = [f"c{i} += b[0]"]
        inner += [f"a{i}_{j} += b[{j}]" for j in range(1, 1 + s_n)]
        for j in range(1 + s_n, 1 + s_n + m_n):
            inner += [f"if b[{j}] > a{i}_{j}:", f"    a{i}_{j} = b[{j}]"]
        inner += [f"d{i}_{j}.append(b[{j}])" for j in range(d0, slot)]
        loop += ["    " + x for x in inner]
    if loop and (sized or check_ids):
        body.append("for start, b in buckets.items():")
        body += ["    " + x for x in loop]
    if need_gap:
        if plan.longest:
            body += [
                "if inside or (prev is None and buckets):",
                "    gap = 0.0",
                "else:",
                "    gap = nan if prev is None else ts - prev",
            ]
        else:
            body += ["last = state.last_ts", "gap = nan if last is None else max(0.0, ts - last)"]
    for i in sized:
        body += [f"u{i}_{j} = union_of(d{i}_{j})" for j in range(d0, slot)]
    body += ["n = state.n", "sums = state.sums"]
    outs: list[str] = []
    for i, (_name, w) in enumerate(plan.windows):
        for how, j in plan._outputs[i]:
            if w.kind == "alltime":
                outs.append({0: "float(n)", 1: f"(sums[{j - 1}] if n else 0.0)",
                             2: f"(sums[{j - 1}] / n if n else nan)"}.get(how, "gap"))  # fmt: skip
                continue
            outs.append({
                0: f"float(c{i})",
                1: f"a{i}_{j}",
                3: f"a{i}_{j}",
                2: f"(a{i}_{j} / c{i} if c{i} else nan)",
                4: f"float(len(u{i}_{j}))",
                5: f"(1.0 if row[{j - 1}] in u{i}_{j} else 0.0)",
            }.get(how, "gap"))  # fmt: skip
    body.append(f"return [{', '.join(outs)}]")
    return lines + ["    " + x for x in body]


def _update_source(plan: WindowPlan) -> list[str]:
    s_n, m_n = len(plan.sum_cols), len(plan.max_cols)
    d0, slot, grain = plan._d0, plan._last, plan.grain
    body = ["sums = state.sums", "if not sums:", f"    sums = state.sums = [0.0] * {s_n}"]
    body += [f"sums[{j}] += row[{j}]" for j in range(s_n)]
    body += [
        "state.n += 1",
        "previous_last = state.last_ts",
        "if previous_last is None or ts > previous_last:",
        "    state.last_ts = ts",
    ]
    if not plan.longest:
        return ["def update(state, ts, row, uid):", *("    " + x for x in body)]
    fresh = ["0", *(["0.0"] * (d0 - 1)), *(["set()"] * (slot - d0)), "ts",
             "set()" if plan.unique is not None else "None"]  # fmt: skip
    body += [
        f"start = int(ts // {grain}) * {grain}",
        "buckets = state.buckets",
        "bucket = buckets.get(start)",
        "created = bucket is None",
        "if created:",
        f"    bucket = buckets[start] = [{', '.join(fresh)}]",
        "bucket[0] += 1",
    ]
    body += [f"bucket[{j}] += row[{j - 1}]" for j in range(1, 1 + s_n)]
    for j in range(1 + s_n, 1 + s_n + m_n):
        body += [f"if row[{j - 1}] > bucket[{j}]:", f"    bucket[{j}] = row[{j - 1}]"]
    body += [f"bucket[{j}].add(row[{j - 1}])" for j in range(d0, slot)]
    body += [f"if ts > bucket[{slot}]:", f"    bucket[{slot}] = ts"]
    if plan.unique is not None:
        body.append(f"bucket[{slot + 1}].add(uid)")
    body += [
        "if created:",
        "    state.horizon = prune_buckets(buckets, state.horizon, ts, previous_last, "
        f"{plan.longest}, {grain})",
    ]
    return ["def update(state, ts, row, uid):", *("    " + x for x in body)]


def plan_source(plan: WindowPlan) -> str:
    """The Python source of the plan's ``snapshot`` and ``update`` (module docstring)."""
    return "\n".join([*_snapshot_source(plan), "", *_update_source(plan), ""])


def compile_plan(plan: WindowPlan) -> CompiledPlan:
    """``snapshot`` and ``update`` of ``plan`` as straight-line functions."""
    source = plan_source(plan)
    scope: dict[str, Any] = {"nan": math.nan, "union_of": union_of, "prune_buckets": prune_buckets}
    exec(compile(source, f"<window plan {plan.columns[:3]}...>", "exec"), scope)
    return CompiledPlan(scope["snapshot"], scope["update"], source)
