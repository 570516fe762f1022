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
    p.federate(rows, model=fs.WideDeep(hidden=(64, 32)), strategy="fedavg")

``fs.WideDeep`` (the default) is the MLP plus a linear path; ``fs.MLP`` is the MLP
alone. The model may also be any Flax NNX module class ``Model(n_features, *, rngs)`` whose
``__call__`` maps rows ``(batch, n_features)`` to logits ``(batch,)``, defined at module
level (a pipeline file is fine): ``p.federate(rows, model=MyModule)``. See
:mod:`app.model.modules` for the full signature.

See :mod:`app.pipeline.dsl` (the steps), :mod:`app.pipeline.windows` (windows and
aggregations), :mod:`app.pipeline.runner` (micro-batch execution) and
:mod:`app.pipeline.spec` (names, order, version of the features).
"""

from __future__ import annotations

import logging

from app.features.profiles import HistoryBounds
from app.pipeline.dsl import MLP, Columns, Pipeline, Stream, Table, WideDeep
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
    "WideDeep",
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
