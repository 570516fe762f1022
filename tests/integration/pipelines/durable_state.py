"""A user pipeline whose rows depend on all of a key's history (loaded by file path).

``json`` records on both topics (own field names, no bank schema): accounts with a risk
and a region, payments joined with the account as of their time, a tumbling window and
an all-time window per account, ``unique="pid"``. The all-time count and the gap to the
previous payment change with every earlier payment of the account, so a worker that lost
(or applied twice) any of its state after a restart gives other rows.
"""

import numpy as np

import fedstream as fs
from topics import CUSTOMERS, TRANSACTIONS

p = fs.Pipeline("durable-state", silos=2)
accounts = p.table(CUSTOMERS, key="account", time="t", name="acct")
rows = (
    p.stream(TRANSACTIONS, key="account", time="t")
    .join(accounts)
    .window(
        [fs.count(), fs.sum_("value"), fs.distinct("kind"), fs.since_prev()],
        recent=fs.tumbling("1h"),
        ever=fs.alltime(),
        unique="pid",
    )
    .map(
        lambda c: {
            "value_log1p": np.log1p(c.value),
            "risk": c["acct.risk"],
            "recent_count": c.recent_count,
            "recent_sum_log1p": np.log1p(c.recent_sum_value),
            "recent_kinds": c.recent_distinct_kind,
            "ever_count": c.ever_count,
            "ever_gap_log1p": np.log1p(np.nan_to_num(c.ever_since_prev, nan=-0.5) + 0.5),
        }
    )
    .label("fraud")
    .to_silos(by="acct.region")
)
p.federate(rows, model=fs.MLP(hidden=(8,)), strategy="fedavg")
