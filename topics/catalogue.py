"""Topic names, partition counts, configs and payload schemas.

Input topics (`bank.customers`, `bank.transactions`, every chatbot tenant's
`chatbot.<tenant>.requests`) share one partition count and are all keyed by customer_id,
so they are co-partitioned: a worker that owns partition p of transactions also owns the
profiles and chatbot requests of the same customers.

Chatbot tenants: each silo (``silo-<id>``) and each operator (``operator`` by default)
has its own request and responses topic. The request topic is the tenant's identity: the
worker answers a request only on the responses topic of the tenant whose request topic
it came from, and only about customers the tenant may see (ACLs on the broker will make
"who may write this request topic" the proof of identity).
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
    "FEATURE_SPECS",
    "FL_METRICS",
    "MODEL_GLOBAL",
    "OPERATOR",
    "SCHEMA_DIR",
    "TRANSACTIONS",
    "WORKER_APP_ID",
    "WORKER_TABLES",
    "TopicSpec",
    "catalogue",
    "chat_requests",
    "chat_responses",
    "chat_tenants",
    "check_tenant",
    "dlq",
    "namespaced",
    "silo_batches",
    "silo_of_topic",
    "silo_tenant",
    "tenant_silo",
    "worker_changelog",
    "worker_changelogs",
]

SCHEMA_DIR = Path(__file__).parent / "schemas"

CUSTOMERS = "bank.customers"
TRANSACTIONS = "bank.transactions"
FEATURES_ENRICHED = "features.enriched"
FEATURE_SPECS = "features.spec"
MODEL_GLOBAL = "fl.model.global"
FL_METRICS = "fl.metrics"
OPERATOR = "operator"
"""The default operator tenant of the chatbot (may ask about every customer)."""
WORKER_APP_ID = "fedstream-worker"
"""Faust app id = consumer group of the stream workers; Faust names the table changelogs
``<app id>-<table>-changelog`` itself (``profiles``, ``windows``), with the input partitions."""

WORKER_TABLES = ("profiles", "windows")
"""The stream worker's Faust tables (one changelog topic each)."""

_SILO_PREFIX = "silo."
_SILO_SUFFIX = ".batches"
_DLQ_PREFIX = "dlq."
_SILO_RE = re.compile(r"^silo\.(\d+)\.batches$")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_SILO_TENANT_RE = re.compile(r"^silo-(0|[1-9]\d*)$")

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


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a legal tenant name (lower-case letters, digits, ``-``)."""
    if not _TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant!r} must match {_TENANT_RE.pattern}")
    return tenant


def silo_tenant(silo_id: int) -> str:
    """The chatbot tenant of a silo: ``silo-<id>``."""
    if silo_id < 0:
        raise ValueError(f"silo id must be >= 0, got {silo_id}")
    return f"silo-{silo_id}"


def tenant_silo(tenant: str) -> int | None:
    """The silo id of a silo tenant; None for an operator."""
    match = _SILO_TENANT_RE.match(check_tenant(tenant))
    return None if match is None else int(match.group(1))


def chat_tenants(
    silo_ids: list[int] | tuple[int, ...], operators: tuple[str, ...] = (OPERATOR,)
) -> tuple[str, ...]:
    """Every chatbot tenant: the operators, then one per silo."""
    for name in operators:
        if tenant_silo(name) is not None:
            raise ValueError(f"operator {name!r} would be taken for a silo tenant")
    silos = tuple(silo_tenant(s) for s in sorted(set(silo_ids)))
    return tuple(dict.fromkeys(operators)) + silos


def chat_requests(tenant: str) -> str:
    """The topic a tenant sends its chatbot requests to."""
    return f"chatbot.{check_tenant(tenant)}.requests"


def chat_responses(tenant: str) -> str:
    """The topic a tenant reads its chatbot replies from (and the only one it gets them on)."""
    return f"chatbot.{check_tenant(tenant)}.responses"


CHATBOT_REQUESTS = chat_requests(OPERATOR)
"""Request topic of the default operator tenant."""
CHATBOT_RESPONSES = chat_responses(OPERATOR)
"""Responses topic of the default operator tenant."""


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
    silo_ids: list[int] | tuple[int, ...],
    input_partitions: int = 4,
    namespace: str = "",
    operators: tuple[str, ...] = (OPERATOR,),
) -> list[TopicSpec]:
    """Every topic of a deployment with the given silos, in creation order.

    With a ``namespace`` every name is :func:`namespaced` (the default is the plain names).
    ``operators`` are the chatbot's operator tenants (each silo is a tenant too).
    """
    tenants = chat_tenants(silo_ids, operators)
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
    ] + [
        TopicSpec(
            chat_requests(tenant),
            input_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            key="utf8:customer_id",
            value="json:chatbot_request.schema.json",
            description=f"chatbot questions of tenant {tenant} about one customer",
        )
        for tenant in tenants
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
            FEATURE_SPECS,
            1,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
            key="utf8:spec version",
            value="json:feature_spec.schema.json",
            description="the feature spec (names, order, version) of the rows, per version",
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
    ] + [
        TopicSpec(
            chat_responses(tenant),
            1,
            {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            key="utf8:request id",
            value="json:chatbot_response.schema.json",
            description=f"answers to tenant {tenant}'s requests, matched by request_id",
        )
        for tenant in tenants
    ]
    specs = inputs + dead_letters + silos + outputs
    if namespace:
        specs = [replace(spec, name=namespaced(spec.name, namespace)) for spec in specs]
    return specs


def worker_changelog(table: str, namespace: str = "") -> str:
    """Changelog topic of a worker table, as Faust names it: ``<group>-<table>-changelog``."""
    return f"{namespaced(WORKER_APP_ID, namespace)}-{table}-changelog"


def worker_changelogs(input_partitions: int = 4, namespace: str = "") -> list[TopicSpec]:
    """The worker's table changelogs: co-partitioned with the inputs, compacted.

    Not part of :func:`catalogue` (no client reads or writes them but the workers); the
    worker creates them before Faust starts (``app.stream.changelogs``) and ``topics
    apply`` does too. Left to Faust, a client that asked for one before it existed made
    the broker auto-create it with one partition and ``delete`` (see the README).
    """
    return [
        TopicSpec(
            worker_changelog(table, namespace),
            input_partitions,
            {"cleanup.policy": "compact"},
            key="utf8:customer_id",
            value="bytes:table entry",
            description=f"changelog of the worker's {table} table (Faust recovers from it)",
        )
        for table in WORKER_TABLES
    ]
