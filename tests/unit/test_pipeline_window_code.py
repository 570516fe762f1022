"""The compiled window plans (app.pipeline.window_code) equal the generic WindowPlan."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.pipeline.window_code import compile_plan
from app.pipeline.windows import (
    Agg,
    KeyWindows,
    Window,
    WindowPlan,
    alltime,
    count,
    distinct,
    hopping,
    max_,
    mean,
    seen,
    since_prev,
    sum_,
    tumbling,
)

AGGS = [count(), sum_("v"), mean("v"), max_("w"), distinct("k"), seen("k"), seen("c"),
        since_prev(), sum_("w")]  # fmt: skip
WINDOWS: list[Window] = [tumbling(60), tumbling(600), hopping(600, 60), hopping(3600, 600),
                         alltime()]  # fmt: skip


@st.composite
def plans(draw: Any) -> WindowPlan:
    picked = draw(st.lists(st.sampled_from(range(len(WINDOWS))), min_size=1, max_size=3,
                           unique=True))  # fmt: skip
    aggs: list[Agg] = draw(st.lists(st.sampled_from(AGGS), min_size=1, max_size=6, unique=True))
    unique = draw(st.sampled_from([None, "id"]))
    return WindowPlan([(f"w{i}", WINDOWS[i]) for i in picked], aggs, unique)


events = st.lists(
    st.tuples(
        st.floats(0, 20_000, allow_nan=False),  # ts, out of order on purpose
        st.floats(0, 1e6, allow_nan=False),  # v
        st.floats(0, 1e6, allow_nan=False),  # w
        st.sampled_from(["a", "b", "c"]),  # k
        st.sampled_from(["x", "y"]),  # c
        st.sampled_from([f"t{i}" for i in range(8)]),  # id: repeats on purpose
    ),
    max_size=40,
)


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y))
                                    for x, y in zip(a, b, strict=True))  # fmt: skip


def _state(s: KeyWindows) -> tuple[Any, ...]:
    return (s.buckets, s.last_ts, s.n, s.sums, s.horizon)


@settings(max_examples=300, deadline=None)
@given(plan=plans(), stream=events)
def test_compiled_plan_gives_the_generic_outputs_and_states(
    plan: WindowPlan, stream: list[tuple[float, float, float, str, str, str]]
) -> None:
    # Prepare
    compiled = compile_plan(plan)
    generic, fast = KeyWindows(), KeyWindows()
    by_name = {"v": 1, "w": 2, "k": 3, "c": 4}

    for ev in stream:
        ts, uid = ev[0], ev[5]
        row = [ev[by_name[c]] for c in plan.inputs()]

        # Execute: the generic way (admit, snapshot, update) and the compiled one
        refused = plan.admit(generic, ts, uid, "key")
        want = None if refused is not None else plan.snapshot(generic, ts, row)
        late = (
            plan.unique is not None
            and plan.longest
            and fast.horizon is not None
            and (int(ts // plan.grain) * plan.grain < fast.horizon)
        )  # the runner checks the horizon before the compiled snapshot
        got = None if late else compiled.snapshot(fast, ts, tuple(row), uid)

        # Assert
        if want is None:
            assert got is None
            continue
        assert got is not None and _same(got, want), (got, want)
        plan.update(generic, ts, row, uid)
        compiled.update(fast, ts, tuple(row), uid)
        assert _state(fast) == _state(generic)


def test_the_fraud_plan_compiles_to_one_pass_over_the_buckets() -> None:
    # Prepare
    from app.pipeline.dsl import WindowStep
    from app.pipelines.fraud import pipeline

    plan = pipeline.rows.steps_of(WindowStep)[0].plan

    # Execute
    source = compile_plan(plan).source

    # Assert: one loop over the buckets in snapshot, none in update
    snapshot, update = source.split("def update")
    assert snapshot.count("for start, b in buckets.items()") == 1
    assert "for " not in update
