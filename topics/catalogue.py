"""Topic names, partition counts, configs and payload schemas.

Input topics (`bank.customers`, `bank.transactions`, `chatbot.requests`) share one
partition count and are all keyed by customer_id, so they are co-partitioned: a worker
that owns partition p of transactions also owns the profiles and chatbot requests of the
same customers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "CHATBOT_REQUESTS",
    "CHATBOT_RESPONSES",
    "CUSTOMERS",
    "FEATURES_ENRICHED",
    "FL_METRICS",
    "MODEL_GLOBAL",
    "SCHEMA_DIR",
    "TRANSACTIONS",
    "WORKER_APP_ID",
    "TopicSpec",
    "catalogue",
    "dlq",
    "namespaced",
    "silo_batches",
    "silo_of_topic",
]

SCHEMA_DIR = Path(__file__).parent / "schemas"

CUSTOMERS = "bank.customers"
TRANSACTIONS = "bank.transactions"
FEATURES_ENRICHED = "features.enriched"
MODEL_GLOBAL = "fl.model.global"
FL_METRICS = "fl.metrics"
CHATBOT_REQUESTS = "chatbot.requests"
CHATBOT_RESPONSES = "chatbot.responses"
WORKER_APP_ID = "fedstream-worker"
"""Faust app id = consumer group of the stream workers; Faust names the table changelogs
``<app id>-<table>-changelog`` itself (``profiles``, ``windows``), with the input partitions."""

_SILO_PREFIX = "silo."
_SILO_SUFFIX = ".batches"
_DLQ_PREFIX = "dlq."
_SILO_RE = re.compile(r"^silo\.(\d+)\.batches$")

DAY_MS = 24 * 3600 * 1000


def namespaced(name: str, namespace: str = "") -> str:
    """``name`` in a namespace: ``<namespace>.<name>``, or ``name`` itself when it is empty.

    A namespace gives a whole deployment (every topic, the worker group and so its table
    changelogs) its own names on a shared broker, e.g. one per test or benchmark run.
    """
    return f"{namespace}.{name}" if namespace else name


def silo_batches(silo_id: int) -> str:
    """Name of the micro-batch topic of one silo."""
    if silo_id < 0:
        raise ValueError(f"silo id must be >= 0, got {silo_id}")
    return f"{_SILO_PREFIX}{silo_id}{_SILO_SUFFIX}"


def silo_of_topic(topic: str) -> int:
    """Inverse of :func:`silo_batches`; raises ValueError for other topics."""
    match = _SILO_RE.match(topic)
    if match is None:
        raise ValueError(f"{topic!r} is not a silo batch topic")
    return int(match.group(1))


def dlq(topic: str) -> str:
    """Dead-letter topic of an input topic."""
    return f"{_DLQ_PREFIX}{topic}"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, layout and what its keys and values are.

    ``key`` and ``value`` describe the payloads: ``json:<schema file>`` for JSON validated
    by a JSON Schema in ``topics/schemas``, ``frame:<layout>`` for binary frames whose
    layout is documented in ``topics/FORMATS.md``, or ``utf8`` for plain strings.
    """

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    key: str = "utf8"
    value: str = "json"
    description: str = ""

    @property
    def compacted(self) -> bool:
        return "compact" in self.configs.get("cleanup.policy", "")


def catalogue(
    silo_ids: list[int] | tuple[int, ...], input_partitions: int = 4, namespace: str = ""
) -> list[TopicSpec]:
    """Every topic of a deployment with the given silos, in creation order.

    With a ``namespace`` every name is :func:`namespaced` (the default is the plain names).
    """
    inputs = [
        TopicSpec(
            CUSTOMERS,
            input_partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
            key="utf8:customer_id",
            value="json:customer.schema.json",
            description="latest customer profile per customer (compacted)",
        ),
        TopicSpec(
            TRANSACTIONS,
            input_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
            key="utf8:customer_id",
            value="json:transaction.schema.json",
            description="card and account transactions, co-partitioned with customers",
        ),
        TopicSpec(
            CHATBOT_REQUESTS,
            input_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            key="utf8:customer_id",
            value="json:chatbot_request.schema.json",
            description="enrichment questions about one customer",
        ),
    ]
    dead_letters = [
        TopicSpec(
            dlq(spec.name),
            1,
            {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
            key="bytes:original key",
            value="json:dead_letter.schema.json",
            description=f"invalid records of {spec.name} with reason and original bytes",
        )
        for spec in inputs
    ]
    silos = [
        TopicSpec(
            silo_batches(silo),
            1,
            {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
            key="utf8:silo id",
            value="frame:batch",
            description=f"vectorised micro-batches of silo {silo} (read only by its client)",
        )
        for silo in sorted(set(silo_ids))
    ]
    outputs = [
        TopicSpec(
            FEATURES_ENRICHED,
            input_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            key="utf8:customer_id",
            value="json:enriched.schema.json",
            description="each joined transaction with its aggregates and risk score",
        ),
        TopicSpec(
            MODEL_GLOBAL,
            1,
            {
                "cleanup.policy": "compact",
                "max.message.bytes": str(16 * 1024 * 1024),
                "min.compaction.lag.ms": "60000",
            },
            key="utf8:model name",
            value="frame:model",
            description="newest global model per model name (compacted)",
        ),
        TopicSpec(
            FL_METRICS,
            1,
            {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
            key="utf8:model name",
            value="json:fl_metrics.schema.json",
            description="global and per-silo metrics of every federated round",
        ),
        TopicSpec(
            CHATBOT_RESPONSES,
            1,
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            key="utf8:request id",
            value="json:chatbot_response.schema.json",
            description="answers to chatbot.requests, matched by request_id",
        ),
    ]
    specs = inputs + dead_letters + silos + outputs
    if namespace:
        specs = [replace(spec, name=namespaced(spec.name, namespace)) for spec in specs]
    return specs
