"""``fedstream exporter``: Prometheus metrics of the federated side and the lags, from Kafka.

The ServerApp runs as a new process per Flower run (``flwr run``; a new one after every
restart) and ClientApps inside each silo's runtime (or one process per message with
Flower's stock SuperExec), so counters of their own would restart with them and Prometheus
would have to discover short-lived processes inside Flower's runtimes. Everything an
operator charts about training is published on Kafka anyway: each round's document on
``fl.metrics`` (round wall time, participation, prequential ROC AUC global and per silo,
model round, rows each silo read and trained, whole-run rows) and the consumer groups'
offsets (worker lag, rows each silo has not trained on yet). The exporter follows them and
serves the gauges on one port, wherever it runs; it survives Flower restarts and sees
every silo from one place. Each warm silo runtime serves its own task counters too
(``python -m app.fl.warm_runtime --metrics-port``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app.ops import metrics
from app.ops.offsets import KafkaReader
from app.ops.status import collect_status
from app.settings import Settings

__all__ = ["observe_round", "observe_status", "run_exporter"]

logger = logging.getLogger(__name__)

_seen_rounds: set[tuple[Any, Any]] = set()


def observe_round(fl: dict[str, Any] | None) -> None:
    """Update the round gauges from a status document's ``federated`` part (once per round)."""
    if not fl:
        return
    key = (fl.get("round"), fl.get("model_version"))
    if key not in _seen_rounds and isinstance(fl.get("round_seconds"), int | float):
        _seen_rounds.add(key)
        metrics.ROUND_SECONDS.observe(float(fl["round_seconds"]))
    if isinstance(fl.get("round"), int):
        metrics.FL_ROUND.set(fl["round"])
    part = fl.get("participation") or {}
    silos = fl.get("silos") or {}
    trained = part.get("trained", len(silos))
    replied = part.get("replied", len(silos) + len(fl.get("idle_silos") or []))
    metrics.PARTICIPATION.labels(state="trained").set(trained)
    metrics.PARTICIPATION.labels(state="replied").set(replied)
    auc = (fl.get("global") or {}).get("roc_auc")
    if isinstance(auc, int | float):
        metrics.PREQUENTIAL_AUC.labels(scope="global").set(auc)
    for silo, value in silos.items():
        if isinstance(value, int | float):
            metrics.PREQUENTIAL_AUC.labels(scope=f"silo {silo}").set(value)
    for silo, rows in (fl.get("silo_rows") or {}).items():
        for kind in ("read", "trained"):
            if isinstance(rows.get(kind), int):
                metrics.ROUND_SILO_ROWS.labels(silo=silo, kind=kind).set(rows[kind])
    for silo, entry in ((fl.get("whole_run") or {}).get("silos") or {}).items():
        if isinstance((entry or {}).get("rows"), int):
            metrics.RUN_SILO_ROWS.labels(silo=silo).set(entry["rows"])


def observe_status(doc: dict[str, Any]) -> None:
    """Lag gauges of the worker group and the silos from a status document."""
    for p in doc["worker"]["partitions"]:
        metrics.GROUP_LAG.labels(group=doc["worker"]["group"], topic=p["topic"],
                                 partition=str(p["partition"])).set(p["lag"])  # fmt: skip
    for silo, waiting in doc["silos"].items():
        metrics.ROWS_WAITING.labels(silo=silo).set(waiting["rows_waiting"])
    for topic, count in doc["dlq"].items():
        metrics.DLQ_RECORDS.labels(topic=topic).set(count)
    observe_round(doc.get("federated"))


def run_exporter(settings: Settings, port: int, interval_s: float) -> None:
    """Serve the gauges on ``port`` and refresh them every ``interval_s`` until stopped."""
    if not metrics.serve(port, "exporter"):
        raise RuntimeError(f"cannot serve metrics on port {port}")
    with KafkaReader(settings.bootstrap) as reader:
        before = None
        while True:
            try:
                doc, before = collect_status(reader, settings, before)
                observe_status(doc)
            except Exception as exc:  # the broker is away for a moment: keep serving
                logger.warning("exporter: status not read: %s", exc)
            time.sleep(interval_s)
