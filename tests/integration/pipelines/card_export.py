"""A small user pipeline for a card export as it comes (loaded by file path in a test).

The CSV has odd column names (``Step``, ``TxScore``, ``isFraud``, ``Merchant Name``), no
key column and a relative time; ``fedstream produce csv`` turns it into transactions
(per-row keys, attrs under their original names). The pipeline windows each key's
recent activity and maps four named features. Import-pure: no I/O at import.
"""

import numpy as np

import fedstream as fs
from topics import TRANSACTIONS

p = fs.Pipeline("card-export", silos=2)
rows = (
    p.stream(TRANSACTIONS, key="customer_id", schema="transaction", attrs=("TxScore",))
    .filter(lambda c: c.amount >= 0)
    .window([fs.count(), fs.sum_("amount")], recent=fs.tumbling("1h"))
    .map(
        lambda c: {
            "amount_log1p": np.log1p(c.amount),
            "tx_score": c["attrs.TxScore"],
            "hour_sin": np.sin((c.ts % 86400.0) / 86400.0 * 2 * np.pi),
            "recent_sum_log1p": np.log1p(c.recent_sum_amount),
        }
    )
    .label("label")
    .to_silos(by="silo")
)
p.federate(rows, model=fs.MLP(hidden=(8,)), strategy="fedavg")
