"""fedstream's pipeline API (also importable as ``import fedstream as fs``).

A pipeline reads like the data flow it describes::

    import fedstream as fs

    p = fs.Pipeline("fraud", silos=3)
    customers = p.table("bank.customers", key="customer_id", schema="customer")
    rows = (p.stream("bank.transactions", key="customer_id", schema="transaction")
              .filter(lambda t: t.amount > 0)
              .join(customers)                                  # as of each event's time
              .window([fs.count(), fs.sum_("amount")], short=fs.tumbling("1h"),
                      long=fs.hopping("24h", every="1h"))
              .map(my_features)                                 # columns -> named floats
              .label("label")
              .to_silos(by=["silo", "profile.silo"]))
    p.federate(rows, model=fs.MLP(hidden=(64, 32)), strategy="fedavg")

See :mod:`app.pipeline.dsl` (the steps), :mod:`app.pipeline.windows` (windows and
aggregations), :mod:`app.pipeline.runner` (micro-batch execution) and
:mod:`app.pipeline.spec` (names, order, version of the features).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.features.profiles import HistoryBounds
from app.pipeline.dsl import Columns, Pipeline, Stream, Table
from app.pipeline.spec import PipelineSpec, pipeline_spec
from app.pipeline.windows import (
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

__all__ = [
    "MLP",
    "Columns",
    "HistoryBounds",
    "Pipeline",
    "PipelineSpec",
    "Stream",
    "Table",
    "alltime",
    "count",
    "distinct",
    "hopping",
    "max_",
    "mean",
    "pipeline_spec",
    "seen",
    "since_prev",
    "sum_",
    "tumbling",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MLP:
    """The default model: a Flax NNX MLP with these hidden layer widths."""

    hidden: tuple[int, ...] = (64, 32)
