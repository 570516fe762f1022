"""The feature specification: which columns a row has, in which order, and its version.

A :class:`FeatureSpec` is all a consumer of batch frames needs to interpret ``X``: the
column names and a short ``version`` hash. The version changes whenever the columns, the
window sizes or the feature code (:data:`FEATURE_CODE_VERSION`, bumped by hand whenever
:mod:`app.features.vectorize` changes meaning) change, so a model trained on one layout
is never fed rows of another.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import orjson

from app.features.validation import CHANNELS, SEGMENTS
from app.features.windows import WindowConfig

__all__ = [
    "BASE_COLUMNS",
    "FEATURE_CODE_VERSION",
    "WINDOW_COLUMNS",
    "FeatureSpec",
    "describe_spec",
    "spec_mismatch",
]

logger = logging.getLogger(__name__)

FEATURE_CODE_VERSION = "1"
"""Bump when the meaning of any column computed by ``vectorize`` changes."""

WINDOW_COLUMNS: tuple[str, ...] = (
    "count_log1p",
    "sum_log1p",
    "mean_log1p",
    "max_log1p",
    "distinct_merchants_log1p",
    "distinct_countries_log1p",
)
"""Per-window columns, prefixed with ``short_`` and ``long_``."""

BASE_COLUMNS: tuple[str, ...] = (
    "amount_log1p",
    "amount_to_limit",
    "hour_sin",
    "hour_cos",
    "is_night",
    *(f"channel_{c}" for c in CHANNELS),
    "is_foreign",
    "profile_missing",
    "age_100",
    "income_band_4",
    "credit_limit_log1p",
    "tenure_years_log1p",
    *(f"segment_{s}" for s in SEGMENTS),
    *(f"short_{c}" for c in WINDOW_COLUMNS),
    *(f"long_{c}" for c in WINDOW_COLUMNS),
    "seconds_since_prev_log1p",
    "first_txn",
    "amount_to_customer_mean",
    "new_merchant",
    "new_country",
)
"""Columns every spec has, in row order; ``txn.<name>`` and ``profile.<name>`` follow."""


def _check_names(kind: str, names: tuple[str, ...]) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate {kind} attribute names: {names!r}")
    for name in names:
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValueError(f"{kind} attribute names must be 1..64 characters, got {name!r}")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Layout of a feature row.

    Parameters
    ----------
    windows : WindowConfig
        Window sizes of the aggregates.
    txn_attrs : tuple of str
        Names in ``Transaction.attrs`` that become ``txn.<name>`` columns (0.0 if absent).
    profile_attrs : tuple of str
        Names in ``Customer.attrs`` that become ``profile.<name>`` columns (0.0 if absent).
    """

    windows: WindowConfig = field(default_factory=WindowConfig)
    txn_attrs: tuple[str, ...] = ()
    profile_attrs: tuple[str, ...] = ()
    _columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _version: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "txn_attrs", tuple(self.txn_attrs))
        object.__setattr__(self, "profile_attrs", tuple(self.profile_attrs))
        _check_names("txn", self.txn_attrs)
        _check_names("profile", self.profile_attrs)
        columns = (
            BASE_COLUMNS
            + tuple(f"txn.{n}" for n in self.txn_attrs)
            + tuple(f"profile.{n}" for n in self.profile_attrs)
        )
        w = self.windows
        payload = orjson.dumps([FEATURE_CODE_VERSION, columns, [w.short_s, w.long_s, w.hop_s]])
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "_version", hashlib.sha256(payload).hexdigest()[:12])

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names in row order."""
        return self._columns

    @property
    def n_features(self) -> int:
        """Number of columns."""
        return len(self._columns)

    @property
    def version(self) -> str:
        """First 12 hex digits of sha256 over code version, columns and window sizes."""
        return self._version

    def document(self, pipeline: str = "fraud") -> dict[str, object]:
        """What the worker publishes on ``features.spec`` (feature_spec.schema.json)."""
        return {"version": self.version, "n_features": self.n_features,
                "columns": list(self.columns), "pipeline": pipeline}  # fmt: skip


def describe_spec(doc: dict[str, object]) -> str:
    """``"9fe8217b3a35 (36 features, pipeline fraud)"``: one spec in an error line."""
    pipeline = doc.get("pipeline")
    extra = f", pipeline {pipeline}" if pipeline else ""
    return f"{doc.get('version') or '?'} ({doc.get('n_features', '?')} features{extra})"


def spec_mismatch(wanted: dict[str, object], published: list[dict[str, object]]) -> str | None:
    """The one-line error when ``wanted`` (version and/or n_features) is not published.

    None when a published spec matches, or nothing is published (nothing to compare).
    """
    if not published:
        return None
    version, width = wanted.get("version"), wanted.get("n_features")
    for doc in published:
        if (not version or doc.get("version") == version) and (
            not width or doc.get("n_features") == width
        ):
            return None
    newest = published[-1]
    return (f"feature spec mismatch: asked for {describe_spec(wanted)}, but the stream "
            f"publishes {describe_spec(newest)} on features.spec")  # fmt: skip
