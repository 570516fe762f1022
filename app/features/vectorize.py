"""Transaction + profile + window aggregates -> one float32 feature row.

The native definition of the fraud features, kept as the independent reference: the
offline reference (:mod:`app.features.reference`) calls :func:`join_transaction` /
:func:`build_row`, and the worker's built-in pipeline (``app/pipelines/fraud.py``, the
pipeline API) is tested to give exactly these rows (``tests/unit/test_pipeline_fraud.py``).
Column order and names are :attr:`FeatureSpec.columns`.

Missing profile
---------------
Transactions may arrive before their customer's profile (different topics, no ordering
guarantee). Then the profile columns are computed from :data:`DEFAULT_PROFILE` (the schema
defaults: age 40, income band 2, credit limit 5000, retail, tenure 0, home country
unknown), ``profile_missing`` is 1.0 so the model can discount them, ``is_foreign`` is 0.0
(home country unknown) and ``profile.<name>`` columns are 0.0.

All values are O(1): amounts and counts are ``log1p``-compressed, ratios are capped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.features.records import Customer, Transaction
from app.features.spec import FeatureSpec
from app.features.validation import CHANNELS, SEGMENTS
from app.features.windows import CustomerWindows, WindowFeatures, admit, snapshot, update

__all__ = [
    "AMOUNT_TO_LIMIT_CAP",
    "AMOUNT_TO_MEAN_CAP",
    "DEFAULT_PROFILE",
    "FIRST_TXN_GAP_S",
    "JoinResult",
    "build_row",
    "join_transaction",
    "label_of",
]

logger = logging.getLogger(__name__)

DEFAULT_PROFILE = Customer(customer_id="", silo=0, ts=0.0)
"""Profile used for the profile columns while a customer's profile is unknown.

Its ``silo`` is never used: routing falls back to a hash of the customer id instead.
"""
FIRST_TXN_GAP_S = 30 * 86400.0
"""``seconds_since_prev`` assumed for a customer's first transaction (``first_txn`` = 1)."""
AMOUNT_TO_LIMIT_CAP = 10.0
"""Cap of ``amount / (credit_limit + 1)``."""
AMOUNT_TO_MEAN_CAP = 20.0
"""Cap of ``amount / (customer_mean + 1)``."""

_FIRST_GAP_LOG1P = math.log1p(FIRST_TXN_GAP_S)
_HOUR_TO_RAD = 2.0 * math.pi / 24.0
_log1p = math.log1p
_sin = math.sin
_cos = math.cos


def _one_hot(names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    return {n: tuple(1.0 if n == m else 0.0 for m in names) for n in names}


_CHANNEL_HOT = _one_hot(CHANNELS)
_SEGMENT_HOT = _one_hot(SEGMENTS)
_NO_CHANNEL = (0.0,) * len(CHANNELS)
_NO_SEGMENT = (0.0,) * len(SEGMENTS)

FloatRow = npt.NDArray[np.float32]


def build_row(
    spec: FeatureSpec,
    txn: Transaction,
    profile: Customer | None,
    window: WindowFeatures,
    out: FloatRow | None = None,
) -> FloatRow:
    """Feature row of one transaction.

    Parameters
    ----------
    spec : FeatureSpec
        Column layout.
    txn : Transaction
        The transaction.
    profile : Customer or None
        The customer's latest profile; None if it has not arrived (see module docs).
    window : WindowFeatures
        Aggregates before this transaction (:func:`app.features.windows.snapshot`).
    out : ndarray or None
        float32 array of shape ``[spec.n_features]`` to fill (e.g. a row of a batch
        buffer); a new array is allocated when None.

    Returns
    -------
    ndarray
        ``out`` or the new float32 row.
    """
    missing = profile is None
    p = DEFAULT_PROFILE if profile is None else profile
    amount = txn.amount
    hour = (txn.ts % 86400.0) / 3600.0
    angle = hour * _HOUR_TO_RAD
    home = p.home_country
    country = txn.country
    foreign = not missing and home != "XX" and country != "XX" and country != home
    w = window
    gap = w.seconds_since_prev
    mean = w.customer_mean
    values = [
        _log1p(amount),
        min(amount / (p.credit_limit + 1.0), AMOUNT_TO_LIMIT_CAP),
        _sin(angle),
        _cos(angle),
        1.0 if hour < 6.0 else 0.0,
        *_CHANNEL_HOT.get(txn.channel, _NO_CHANNEL),
        1.0 if foreign else 0.0,
        1.0 if missing else 0.0,
        p.age / 100.0,
        p.income_band / 4.0,
        _log1p(p.credit_limit),
        _log1p(p.tenure_months / 12.0),
        *_SEGMENT_HOT.get(p.segment, _NO_SEGMENT),
        _log1p(w.short_count),
        _log1p(w.short_sum),
        _log1p(w.short_mean),
        _log1p(w.short_max),
        _log1p(w.short_distinct_merchants),
        _log1p(w.short_distinct_countries),
        _log1p(w.long_count),
        _log1p(w.long_sum),
        _log1p(w.long_mean),
        _log1p(w.long_max),
        _log1p(w.long_distinct_merchants),
        _log1p(w.long_distinct_countries),
        _FIRST_GAP_LOG1P if gap is None else _log1p(gap),
        1.0 if gap is None else 0.0,
        1.0 if mean is None else min(amount / (mean + 1.0), AMOUNT_TO_MEAN_CAP),
        0.0 if w.seen_merchant else 1.0,
        0.0 if w.seen_country else 1.0,
    ]
    if spec.txn_attrs:
        attrs = txn.attrs
        values.extend([attrs.get(n, 0.0) for n in spec.txn_attrs])
    if spec.profile_attrs:
        pattrs = p.attrs
        values.extend([pattrs.get(n, 0.0) for n in spec.profile_attrs])
    if out is None:
        return np.array(values, dtype=np.float32)
    out[:] = values
    return out


def label_of(txn: Transaction) -> float:
    """Training label: 1.0 fraud, 0.0 genuine, -1.0 unknown."""
    label = txn.label
    return -1.0 if label is None else float(label)


@dataclass(frozen=True, slots=True)
class JoinResult:
    """Outcome of joining one transaction with its profile and window state.

    ``new_state`` is the *same object* as the state passed in, updated in place.
    """

    row: FloatRow
    label: float
    window: WindowFeatures
    new_state: CustomerWindows


def join_transaction(
    spec: FeatureSpec,
    txn: Transaction,
    profile: Customer | None,
    state: CustomerWindows | None,
    out: FloatRow | None = None,
) -> JoinResult:
    """Admit, snapshot the windows, build the row, then add ``txn`` to the state.

    Raises
    ------
    InvalidRecord
        From :func:`app.features.windows.admit` (a repeated ``txn_id``, a transaction
        older than the retained history) before anything changed.

    Parameters
    ----------
    spec : FeatureSpec
        Column layout and window sizes.
    txn : Transaction
        The transaction.
    profile : Customer or None
        Latest profile of ``txn.customer_id``; None if unknown.
    state : CustomerWindows or None
        The customer's window state (mutated); None starts a fresh one.
    out : ndarray or None
        Optional destination row, see :func:`build_row`.
    """
    if state is None:
        state = CustomerWindows()
    config = spec.windows
    admit(state, txn, config)
    window = snapshot(state, txn.ts, config, merchant=txn.merchant_category, country=txn.country)
    row = build_row(spec, txn, profile, window, out)
    return JoinResult(row, label_of(txn), window, update(state, txn, config))
