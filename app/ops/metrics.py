"""Prometheus metrics of the worker, the federated server and each silo's runtime.

One registry per process (``prometheus_client``'s default), served over HTTP by
:func:`serve`. Names start with ``fedstream_``; the Grafana dashboard in
``docker/grafana/`` and the scrape config in ``docker/prometheus.yml`` use them.

Dead-letter reasons are free text with details (``field 'amount': must be ...``); the
``reason`` label is the part before the first colon with quoted values and numbers
replaced (:func:`reason_label`), and at most :data:`MAX_REASONS` distinct labels are
kept (later ones count as ``other``), so a flood of odd records cannot explode the series.
"""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "CHAT_LATENCY",
    "COMMIT_SECONDS",
    "DEAD_LETTERS",
    "DLQ_RECORDS",
    "ENRICH_LATENCY",
    "EVENTS",
    "FL_ROUND",
    "GROUP_LAG",
    "LAG",
    "MAX_REASONS",
    "MISPARTITIONED",
    "MODEL_ROUND",
    "PARTICIPATION",
    "PREQUENTIAL_AUC",
    "ROUND_SECONDS",
    "ROUND_SILO_ROWS",
    "ROWS_WAITING",
    "RUNTIME_TASKS",
    "RUNTIME_TASK_SECONDS",
    "RUN_SILO_ROWS",
    "dead_letter",
    "reason_label",
    "serve",
]

logger = logging.getLogger(__name__)

MAX_REASONS = 50

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EVENTS = Counter("fedstream_events", "Input records read by the worker", ["topic"])
DEAD_LETTERS = Counter(
    "fedstream_dead_letters", "Records sent to a dead-letter topic", ["topic", "reason"]
)
MISPARTITIONED = Counter(
    "fedstream_mispartitioned",
    "Input records on a partition their key does not hash to (murmur2), forwarded",
    ["topic"],
)
LAG = Gauge("fedstream_worker_lag", "Records behind the end of an input partition",
            ["topic", "partition"])  # fmt: skip
ENRICH_LATENCY = Histogram(
    "fedstream_event_to_enriched_seconds",
    "Kafka timestamp of a transaction to its enriched record",
    buckets=_LATENCY_BUCKETS,
)
COMMIT_SECONDS = Histogram(
    "fedstream_commit_seconds", "One worker commit: flush, state writes, offsets",
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
CHAT_LATENCY = Histogram(
    "fedstream_chat_latency_seconds",
    "Kafka timestamp of a chatbot request to its answer being sent",
    buckets=_LATENCY_BUCKETS,
)
MODEL_ROUND = Gauge("fedstream_model_round", "Round of the global model in use (-1: none)")
MODEL_ROUND.set(-1)
ROUND_SECONDS = Histogram(
    "fedstream_round_seconds", "Wall time of one federated round",
    buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)  # fmt: skip
PARTICIPATION = Gauge(
    "fedstream_round_silos", "Silos of the latest round by what they did", ["state"]
)
PREQUENTIAL_AUC = Gauge(
    "fedstream_prequential_roc_auc",
    "Prequential ROC AUC of the latest round (scope: global or silo id)",
    ["scope"],
)
ROUND_SILO_ROWS = Gauge(
    "fedstream_round_silo_rows",
    "Rows of a silo in the latest round: read (scored first) and trained (its weight)",
    ["silo", "kind"],
)
RUN_SILO_ROWS = Gauge("fedstream_run_silo_rows", "Rows a silo scored over the whole run",
                      ["silo"])  # fmt: skip
FL_ROUND = Gauge("fedstream_fl_round", "Newest federated round published on fl.metrics")
GROUP_LAG = Gauge("fedstream_group_lag", "Committed offset behind the end, per partition",
                  ["group", "topic", "partition"])  # fmt: skip
ROWS_WAITING = Gauge("fedstream_silo_rows_waiting", "Rows a silo has not trained on yet", ["silo"])
RUNTIME_TASKS = Counter("fedstream_runtime_tasks", "ClientApp tasks a silo runtime ran",
                        ["status"])  # fmt: skip
RUNTIME_TASK_SECONDS = Histogram(
    "fedstream_runtime_task_seconds", "Wall time of one ClientApp task (read, score, train)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)  # fmt: skip
DLQ_RECORDS = Gauge("fedstream_dlq_records", "Records on a dead-letter topic", ["topic"])

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_reasons: set[str] = set()


def reason_label(reason: str) -> str:
    """A low-cardinality label for a dead-letter reason (see the module docstring)."""
    head = reason.split(":", 1)[0].strip()
    head = _NUMBER.sub(
        "N", _QUOTED.sub(lambda m: m.group(0) if _is_field(m.group(0)) else "'…'", head)
    )
    label = head[:60] or "unknown"
    if label not in _reasons:
        if len(_reasons) >= MAX_REASONS:
            return "other"
        _reasons.add(label)
    return label


def _is_field(quoted: str) -> bool:
    """Quoted schema field names stay ('amount'); quoted data (keys, ids) does not."""
    return re.fullmatch(r"['\"][a-z_][a-z0-9_.]{0,30}['\"]", quoted) is not None


def dead_letter(topic: str, reason: str) -> None:
    """Count one dead letter of ``topic`` (the input topic) by its reason."""
    DEAD_LETTERS.labels(topic=topic, reason=reason_label(reason)).inc()


def serve(port: int, what: str) -> bool:
    """Serve ``/metrics`` on ``port`` (0 = off); False (logged) when the port is taken."""
    if port <= 0:
        return False
    try:
        start_http_server(port)
    except OSError as exc:
        logger.warning("%s: Prometheus metrics not served on port %d: %s", what, port, exc)
        return False
    logger.info("%s: Prometheus metrics on http://0.0.0.0:%d/metrics", what, port)
    return True
