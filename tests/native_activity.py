"""The fraud pipeline's chat activity in the shape of the native reference's.

``app.features.windows.activity_summary`` (the native implementation of the fraud
windows, kept as the reference) names the aggregates ``sum``, ``distinct_merchants``...;
the worker's chatbot reports the pipeline's own names (``sum_amount``,
``distinct_merchant_category``...). Tests compare the values through this renaming.
"""

from __future__ import annotations

from typing import Any

_RENAME = {
    "count": "count",
    "sum_amount": "sum",
    "mean_amount": "mean",
    "max_amount": "max",
    "distinct_merchant_category": "distinct_merchants",
    "distinct_country": "distinct_countries",
}
_TOP = ("as_of", "short_s", "long_s", "last_ts", "seconds_since_last", "lifetime_count")


def as_native(activity: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's activity with the reference's names (and only its keys)."""
    out = {k: activity[k] for k in _TOP}
    for window in ("short", "long"):
        entry = {_RENAME[k]: v for k, v in activity[window].items() if k in _RENAME}
        if entry["count"] == 0 and entry["mean"] is None:
            entry["mean"] = 0.0  # an empty window's mean: None here, 0.0 in the reference
        out[window] = entry
    out["lifetime_mean"] = activity["customer"]["mean_amount"]
    return out


def native_subset(summary: dict[str, Any]) -> dict[str, Any]:
    """The reference's summary without what the pipeline does not report (value lists)."""
    out = dict(summary)
    for window in ("short", "long"):
        out[window] = {k: v for k, v in summary[window].items() if k in _RENAME.values()}
    return out
