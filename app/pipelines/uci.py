"""Example: the UCI credit-default replay (``fedstream produce uci``) as a pipeline.

Six monthly statements per customer; the label (default next month) rides on the last.
Every statement goes through the customer's all-time window, only the labelled statement
becomes a training row. Use it as ``app.pipelines.uci:pipeline``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

import app.pipeline as fs
from app.produce.uci import UCI_PROFILE_ATTRS, UCI_TXN_ATTRS
from topics import CUSTOMERS, TRANSACTIONS

__all__ = ["pipeline", "uci_features"]

logger = logging.getLogger(__name__)


def uci_features(c: fs.Columns) -> dict[str, Any]:
    """Profile, the latest statement and the customer's statement history."""
    limit = c["profile.credit_limit"]
    bill, paid = c["attrs.bill_amt"], c["attrs.pay_amt"]
    return {
        "limit_log1p": np.log1p(limit),
        "age_100": c["profile.age"] / 100.0,
        "sex": c["profile.attrs.sex"],
        "education": c["profile.attrs.education"],
        "marriage": c["profile.attrs.marriage"],
        "pay_status": c["attrs.pay_status"],
        "bill_to_limit": np.clip(bill / (limit + 1.0), -1.0, 5.0),
        "paid_to_bill": np.clip(paid / (np.abs(bill) + 1.0), 0.0, 5.0),
        "mean_pay_status": np.nan_to_num(c["history_mean_attrs.pay_status"]),
        "paid_to_billed": np.clip(
            c["history_sum_attrs.pay_amt"] / (np.abs(c["history_sum_attrs.bill_amt"]) + 1.0),
            0.0,
            5.0,
        ),
        "statements_log1p": np.log1p(c["history_count"]),
    }


p = fs.Pipeline("uci-credit", silos=3)
profiles = p.table(CUSTOMERS, key="customer_id", schema="customer", attrs=UCI_PROFILE_ATTRS)
rows = (
    p.stream(TRANSACTIONS, key="customer_id", schema="transaction", attrs=UCI_TXN_ATTRS)
    .join(profiles)
    .window(
        [
            fs.count(),
            fs.mean("attrs.pay_status"),
            fs.sum_("attrs.pay_amt"),
            fs.sum_("attrs.bill_amt"),
        ],
        history=fs.alltime(),
    )
    .filter(lambda c: ~np.isnan(c.label))  # the labelled statement is the training row
    .map(uci_features)
    .label("label")
    .to_silos(by=["silo", "profile.silo"])
)
p.federate(rows, model=fs.WideDeep(hidden=(32, 16)), strategy="fedavg")
pipeline = p
