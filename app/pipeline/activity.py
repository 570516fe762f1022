"""What a pipeline's state says about one key, in words and numbers (the chatbot's facts).

* :func:`activity`: the window aggregates of a key as of a time, from the same
  :class:`~app.pipeline.windows.WindowPlan` the rows were computed with, so the chatbot
  of any pipeline answers with that pipeline's windows and aggregations;
* :func:`feature_phrase`: a plain-language name of a feature column, from the pipeline's
  own descriptions (:meth:`~app.pipeline.dsl.Pipeline.describe`), else derived from its
  window names (``short_count_log1p`` -> "the last-hour count"), else the column name.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from app.pipeline.dsl import Pipeline, WindowStep
from app.pipeline.state import KeyState
from app.pipeline.windows import Window, WindowPlan

__all__ = ["activity", "feature_phrase", "span_words"]

logger = logging.getLogger(__name__)

_UNIT_WORDS = ((7 * 86400, "week"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def span_words(seconds: int) -> str:
    """``3600`` -> "hour", ``86400`` -> "day", ``7200`` -> "2 hours", ``90`` -> "90 seconds"."""
    for unit, word in _UNIT_WORDS:
        if seconds % unit == 0:
            n = seconds // unit
            return word if n == 1 else f"{n} {word}s"
    return f"{seconds} seconds"


def _window_words(w: Window) -> str:
    return "all-time" if w.kind == "alltime" else f"last-{span_words(w.size_s).replace(' ', '-')}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def activity(plans: list[WindowPlan], state: KeyState, as_of: float) -> dict[str, Any]:
    """JSON-ready aggregates of ``state`` as of ``as_of``.

    One entry per window name: ``{agg name: value}`` (``seen`` left out: it needs an
    event), plus ``<name>_s`` with the window's size for sized windows; ``last_ts``,
    ``seconds_since_last`` and ``lifetime_count`` from the first window step.
    """
    out: dict[str, Any] = {"as_of": as_of}
    for i, plan in enumerate(plans):
        keyed = state.windows[i] if i < len(state.windows) else None
        if keyed is None:
            from app.pipeline.windows import KeyWindows

            keyed = KeyWindows()
        values = plan.snapshot(keyed, as_of, [None] * len(plan.inputs()))
        by_column = dict(zip(plan.columns, values, strict=True))
        for name, w in plan.windows:
            entry: dict[str, Any] = {}
            for agg in plan.aggs:
                column = f"{name}_{agg.name}"
                if agg.how == "seen" or column not in by_column:
                    continue
                value = by_column[column]
                entry[agg.name] = int(value) if agg.how in ("count", "distinct") else _finite(value)
            out[name] = entry
            if w.kind != "alltime":
                out[f"{name}_s"] = w.size_s
        if i == 0:
            last = keyed.last_ts
            out["last_ts"] = last
            out["seconds_since_last"] = None if last is None else max(0.0, as_of - last)
            out["lifetime_count"] = keyed.n
    return out


def feature_phrase(column: str, pipeline: Pipeline | None) -> str:
    """A plain-language name of ``column`` (see the module docstring)."""
    if pipeline is not None:
        described = pipeline.descriptions.get(column)
        if described is not None:
            return described
        for step in pipeline.rows.steps_of(WindowStep):
            for name, w in step.plan.windows:
                if column.startswith(f"{name}_"):
                    what = column[len(name) + 1 :].removesuffix("_log1p").replace("_", " ")
                    return f"the {_window_words(w)} {what}"
    for prefix, owner in (("txn.", "transaction's"), ("profile.", "profile's")):
        if column.startswith(prefix):
            return f"the {owner} {column[len(prefix) :].replace('_', ' ')}"
    return column.removesuffix("_log1p").replace("_", " ")
