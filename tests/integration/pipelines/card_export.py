"""A small user pipeline for a card export as it comes (loaded by file path in a test).

The CSV has odd column names (``Step``, ``TxScore``, ``isFraud``, ``Merchant Name``), no
key column and a relative time; ``fedstream produce csv`` turns it into transactions
(per-row keys, attrs under their original names). The pipeline windows each key's
recent activity and maps four named features, and trains its own Flax NNX module
(``ScoreNet``: the documented model signature). Import-pure: no I/O at import.
"""

import jax
import numpy as np
from flax import nnx

import fedstream as fs
from topics import TRANSACTIONS


class ScoreNet(nnx.Module):
    """Logistic regression plus a small tanh interaction path: not the built-in MLP."""

    head_bias = "linear.bias"  # the output bias a fresh model starts at the base rate

    def __init__(self, n_features: int, *, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(n_features, 1, rngs=rngs)
        self.cross = nnx.Linear(n_features, 4, rngs=rngs)
        self.mix = nnx.Linear(4, 1, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return (self.linear(x) + self.mix(nnx.tanh(self.cross(x))))[..., 0]


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
p.federate(rows, model=ScoreNet, strategy="fedavg")
