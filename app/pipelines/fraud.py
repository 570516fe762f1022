"""The built-in fraud pipeline, written with the pipeline API.

Transactions joined with the customer's profile as of their time, two windows of the
customer's recent activity and an all-time mean, mapped to 36 named features (the very
rows of :func:`app.features.vectorize.build_row`, so models trained before still fit),
labelled, and routed to the transaction's silo, else the customer's home silo, else a
stable hash of the customer id.

Use it as ``app.pipelines.fraud:pipeline`` or build a variant with :func:`fraud_pipeline`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import app.pipeline as fs
from app.features.validation import CHANNELS, SEGMENTS
from app.features.vectorize import AMOUNT_TO_LIMIT_CAP, AMOUNT_TO_MEAN_CAP, FIRST_TXN_GAP_S
from topics import CUSTOMERS, TRANSACTIONS

__all__ = ["DESCRIPTIONS", "fraud_features", "fraud_pipeline", "pipeline"]

logger = logging.getLogger(__name__)

WINDOW_AGGS = [
    fs.count(),
    fs.sum_("amount"),
    fs.mean("amount"),
    fs.max_("amount"),
    fs.distinct("merchant_category"),
    fs.distinct("country"),
    fs.seen("merchant_category"),
    fs.seen("country"),
    fs.since_prev(),
]


DESCRIPTIONS: dict[str, str] = {
    "amount_log1p": "the transaction amount",
    "amount_to_limit": "the amount relative to the credit limit",
    "hour_sin": "the time of day",
    "hour_cos": "the time of day",
    "is_night": "a night-time transaction",
    "channel_pos": "the card-present (POS) channel",
    "channel_online": "the online channel",
    "channel_atm": "the ATM channel",
    "channel_transfer": "the transfer channel",
    "is_foreign": "a transaction abroad",
    "profile_missing": "a missing customer profile",
    "age_100": "the customer's age",
    "income_band_4": "the income band",
    "credit_limit_log1p": "the credit limit",
    "tenure_years_log1p": "the customer's tenure",
    "segment_retail": "the retail segment",
    "segment_premium": "the premium segment",
    "segment_business": "the business segment",
    "segment_student": "the student segment",
    "seconds_since_prev_log1p": "the time since the previous transaction",
    "first_txn": "a first transaction",
    "amount_to_customer_mean": "the amount compared with the customer's usual spending",
    "new_merchant": "a merchant category new for this customer",
    "new_country": "a country new for this customer",
}
"""Plain-language names of features for the chatbot (window features are named from their
windows: ``short_count_log1p`` is "the last-hour count")."""


def _log1p0(values: Any) -> Any:
    """log1p, with an empty window's NaN mean counted as 0."""
    return np.log1p(np.nan_to_num(values, nan=0.0))


def fraud_features(
    txn_attrs: Sequence[str] = (), profile_attrs: Sequence[str] = ()
) -> Callable[[fs.Columns], dict[str, Any]]:
    """The map step: columns of a micro-batch -> the named features, in row order."""

    def features(c: fs.Columns) -> dict[str, Any]:
        amount = c.amount
        hour = (c.ts % 86400.0) / 3600.0
        angle = hour * (2.0 * math.pi / 24.0)
        missing = c["profile.missing"]
        home, country = c["profile.home_country"], c.country
        gap, mean = c["customer_since_prev"], c["customer_mean_amount"]
        out: dict[str, Any] = {
            "amount_log1p": np.log1p(amount),
            "amount_to_limit": np.minimum(
                amount / (c["profile.credit_limit"] + 1.0), AMOUNT_TO_LIMIT_CAP
            ),
            "hour_sin": np.sin(angle),
            "hour_cos": np.cos(angle),
            "is_night": hour < 6.0,
        }
        for ch in CHANNELS:
            out[f"channel_{ch}"] = c.channel == ch
        out["is_foreign"] = (
            (missing == 0.0) & (home != "XX") & (country != "XX") & (country != home)
        )
        out["profile_missing"] = missing
        out["age_100"] = c["profile.age"] / 100.0
        out["income_band_4"] = c["profile.income_band"] / 4.0
        out["credit_limit_log1p"] = np.log1p(c["profile.credit_limit"])
        out["tenure_years_log1p"] = np.log1p(c["profile.tenure_months"] / 12.0)
        for seg in SEGMENTS:
            out[f"segment_{seg}"] = c["profile.segment"] == seg
        for w in ("short", "long"):
            out[f"{w}_count_log1p"] = np.log1p(c[f"{w}_count"])
            out[f"{w}_sum_log1p"] = np.log1p(c[f"{w}_sum_amount"])
            out[f"{w}_mean_log1p"] = _log1p0(c[f"{w}_mean_amount"])
            out[f"{w}_max_log1p"] = np.log1p(c[f"{w}_max_amount"])
            out[f"{w}_distinct_merchants_log1p"] = np.log1p(c[f"{w}_distinct_merchant_category"])
            out[f"{w}_distinct_countries_log1p"] = np.log1p(c[f"{w}_distinct_country"])
        first = np.isnan(gap)
        out["seconds_since_prev_log1p"] = np.where(first, math.log1p(FIRST_TXN_GAP_S),
                                                   np.log1p(np.nan_to_num(gap)))  # fmt: skip
        out["first_txn"] = first
        out["amount_to_customer_mean"] = np.where(
            np.isnan(mean), 1.0, np.minimum(amount / (np.nan_to_num(mean) + 1.0),
                                            AMOUNT_TO_MEAN_CAP),
        )  # fmt: skip
        out["new_merchant"] = 1.0 - c["long_seen_merchant_category"]
        out["new_country"] = 1.0 - c["long_seen_country"]
        for name in txn_attrs:
            out[f"txn.{name}"] = c[f"attrs.{name}"]
        for name in profile_attrs:
            out[f"profile.{name}"] = c[f"profile.attrs.{name}"]
        return out

    return features


def fraud_pipeline(
    silos: int = 3,
    short: str | int = "1h",
    long: str | int = "24h",
    hop: str | int = "1h",
    txn_attrs: Sequence[str] = (),
    profile_attrs: Sequence[str] = (),
) -> fs.Pipeline:
    """The fraud pipeline with these windows and extra attribute columns."""
    p = fs.Pipeline("fraud", silos=silos)
    customers = p.table(CUSTOMERS, key="customer_id", schema="customer", attrs=profile_attrs)
    rows = (
        p.stream(TRANSACTIONS, key="customer_id", schema="transaction", attrs=txn_attrs)
        .join(customers)
        .window(
            WINDOW_AGGS,
            short=fs.tumbling(short),
            long=fs.hopping(long, every=hop),
            customer=fs.alltime(),  # all-time mean amount, seconds since the previous one
            unique="txn_id",  # a repeated txn_id of a customer is refused, not counted
        )
        .map(fraud_features(txn_attrs, profile_attrs))
        .label("label")
        .to_silos(by=["silo", "profile.silo"])
    )
    p.federate(rows, model=fs.WideDeep(hidden=(64, 32)), strategy="fedavg")
    return p.describe(**DESCRIPTIONS)


pipeline = fraud_pipeline()
"""The default: 3 silos, 1 h tumbling and 24 h hopping (every 1 h) windows."""
