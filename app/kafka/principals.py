"""The principals of a fedstream cluster, their credentials and the ACLs their jobs need.

Every component is a principal (SCRAM-SHA-512 user) holding only what its job needs:

=============== ===========================================================================
admin           super user: applies the catalogue, creates users and ACLs (the operator)
worker          reads the inputs, tenants' request topics and the model; writes silo batches,
                dead letters, ``features.enriched``, ``features.spec`` and tenants' responses;
                owns its group and Faust's internal topics (``<app id>-*``)
bank            writes ``bank.customers`` and ``bank.transactions`` (producers, CSV replay)
silo-<id>       reads ``silo.<id>.*`` under its own consumer group, nothing else
fl-server       writes and reads ``fl.model.global`` and ``fl.metrics``, reads ``features.spec``
tenant-<t>      writes ``chatbot.<t>.requests``, reads ``chatbot.<t>.responses``
site-<id>       on silo <id>'s OWN cluster only (a site with its own Kafka): writes
                ``fl.model.global``, the global model its SuperNode relays (app/fl/site_model.py)
=============== ===========================================================================

Topic names are namespaced like the catalogue (prefixed patterns where a prefix is meant).
Client config files live in one directory per cluster (``<data-dir>/kafka/clients`` for
the local broker), one ``<principal>.conf`` each, mode 0600; a remote site keeps only its
own principal's file and the CA certificate.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.kafka.security import KafkaIdentity, read_client_config, write_client_config
from topics import (
    CUSTOMERS,
    FEATURE_SPECS,
    FEATURES_ENRICHED,
    FL_METRICS,
    MODEL_GLOBAL,
    TRANSACTIONS,
    WORKER_APP_ID,
    chat_requests,
    chat_responses,
    namespaced,
)

__all__ = [
    "ADMIN",
    "BANK",
    "FL_SERVER",
    "WORKER",
    "Grant",
    "ask_group_prefix",
    "ensure_credentials",
    "fl_grants",
    "in_namespace",
    "owned_by_fl",
    "owned_by_stream",
    "principal_names",
    "silo_principal",
    "site_grants",
    "site_principal",
    "stream_grants",
    "tenant_principal",
]

logger = logging.getLogger(__name__)

ADMIN = "admin"
WORKER = "worker"
BANK = "bank"
FL_SERVER = "fl-server"
READ = ("READ", "DESCRIBE")
# groups of consumers that only assign (app.fl.kafka_io.scan_topic, app.stream.model_follower)
SCAN_GROUP_PREFIX = "fedstream-scan-"
FOLLOWER_GROUP_PREFIX = "fedstream-model-follower-"
WRITE = ("WRITE", "DESCRIBE")


def silo_principal(silo: int) -> str:
    return f"silo-{silo}"


def site_principal(silo: int) -> str:
    """The principal that relays the global model onto silo ``silo``'s own cluster."""
    return f"site-{silo}"


def tenant_principal(tenant: str) -> str:
    return f"tenant-{tenant}"


def ask_group_prefix(tenant: str) -> str:
    """Prefix of the (assign-only) consumer groups of ``fedstream ask`` as ``tenant``."""
    return f"fedstream-ask-{tenant}-"


def principal_names(silos: Iterable[int], tenants: Iterable[str]) -> list[str]:
    """Every client principal of a deployment (the admin first)."""
    return [ADMIN, WORKER, BANK, FL_SERVER, *map(silo_principal, silos),
            *map(tenant_principal, tenants)]  # fmt: skip


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL: ``principal`` may do ``operation`` on a resource.

    ``resource`` is ``TOPIC`` or ``GROUP``; ``prefixed`` selects Kafka's PREFIXED pattern
    (``name`` is a prefix) over LITERAL.
    """

    principal: str
    resource: str
    name: str
    operation: str
    prefixed: bool = False


def _grants(principal: str, resource: str, names: Iterable[str], ops: Sequence[str],
            prefixed: bool = False) -> list[Grant]:  # fmt: skip
    return [Grant(principal, resource, n, op, prefixed) for n in names for op in ops]


def stream_grants(namespace: str, silos: Iterable[int], tenants: Iterable[str]) -> list[Grant]:
    """ACLs of the stream side: worker, bank producers, chatbot tenants."""
    ns = namespace
    silos, tenants = list(silos), list(tenants)
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    requests = [namespaced(chat_requests(t), ns) for t in tenants]
    responses = [namespaced(chat_responses(t), ns) for t in tenants]
    app_id = namespaced(WORKER_APP_ID, ns)
    out = [
        # inputs are also written: records on the wrong partition are forwarded
        *_grants(WORKER, "TOPIC", inputs, ("READ", "WRITE", "DESCRIBE")),
        # requests too: one on the wrong partition is forwarded to the right one
        *_grants(WORKER, "TOPIC", requests, ("READ", "WRITE", "DESCRIBE")),
        *_grants(WORKER, "TOPIC", [namespaced(MODEL_GLOBAL, ns)], READ),
        *_grants(
            WORKER,
            "TOPIC",
            [namespaced(FEATURES_ENRICHED, ns), namespaced(FEATURE_SPECS, ns), *responses],
            WRITE,
        ),
        *_grants(WORKER, "TOPIC", [namespaced(f"silo.{s}.", ns) for s in silos], WRITE, True),
        *_grants(WORKER, "TOPIC", [namespaced("dlq.", ns)], WRITE, True),
        # Faust's changelogs and its assignor topic are <app id>-...; it creates them itself
        *_grants(WORKER, "TOPIC", [f"{app_id}-"], ("ALL",), True),
        *_grants(WORKER, "GROUP", [app_id], ("READ", "DESCRIBE"), True),
        # the model follower assigns partitions itself, but librdkafka still names a group
        *_grants(WORKER, "GROUP", [FOLLOWER_GROUP_PREFIX], ("READ",), True),
        *_grants(BANK, "TOPIC", inputs, WRITE),
    ]
    for tenant, req, resp in zip(tenants, requests, responses, strict=True):
        out += _grants(tenant_principal(tenant), "TOPIC", [req], WRITE)
        out += _grants(tenant_principal(tenant), "TOPIC", [resp], READ)
        out += _grants(tenant_principal(tenant), "GROUP", [ask_group_prefix(tenant)], ("READ",),
                       True)  # fmt: skip
    return out


def fl_grants(silos: Iterable[int], groups: dict[int, str]) -> list[Grant]:
    """ACLs of the federated side: each silo reads its own topics under its own group
    (``groups[silo]``); the server writes and reads the model and metrics topics."""
    out = _grants(FL_SERVER, "TOPIC", [MODEL_GLOBAL, FL_METRICS], ("READ", "WRITE", "DESCRIBE"))
    out += _grants(FL_SERVER, "GROUP", [SCAN_GROUP_PREFIX], ("READ",), True)  # resume scans
    out += _grants(FL_SERVER, "TOPIC", [FEATURE_SPECS], READ)  # the spec it trains on
    for silo in silos:
        out += _grants(silo_principal(silo), "TOPIC", [f"silo.{silo}."], READ, True)
        out += _grants(silo_principal(silo), "GROUP", [groups[silo]], ("READ", "DESCRIBE"))
    return out


def site_grants(silos: Iterable[int]) -> list[Grant]:
    """ACLs of a site's model relay (on the site's own cluster): write the model topic,
    nothing else (no read: the relay never looks at what is there; the site's worker reads
    it as ``worker``)."""
    return [g for s in silos for g in _grants(site_principal(s), "TOPIC", [MODEL_GLOBAL], WRITE)]


# first name segments of un-namespaced names (the catalogue's, Faust's, the groups')
_ROOTS = frozenset(n.split(".", 1)[0] for n in (CUSTOMERS, FEATURES_ENRICHED, MODEL_GLOBAL,
                                                 chat_requests("x"), "silo.", "dlq."))  # fmt: skip


def in_namespace(name: str, namespace: str) -> bool:
    """Whether a topic or group name (or prefix) of an ACL belongs to ``namespace``'s
    deployment ("" = the un-namespaced one); names shared by every namespace (the
    ``fedstream-...`` group prefixes) belong to "" only."""
    if namespace:
        return name.startswith(f"{namespace}.")
    return name.startswith("fedstream-") or name.split(".", 1)[0] in _ROOTS


def _silo_of(principal: str) -> int | None:
    head, _, tail = principal.partition("-")
    return int(tail) if head == "silo" and tail.isdigit() else None


def owned_by_stream(grant: Grant, namespace: str, silos: Iterable[int]) -> bool:
    """Whether provisioning the stream side of ``namespace`` for ``silos`` manages
    ``grant``: the worker's, the bank's and every tenant's ACLs in the namespace, and
    those of silo principals that are no longer silos of the deployment."""
    if not in_namespace(grant.name, namespace):
        return False
    p = grant.principal
    silo = _silo_of(p)
    return (
        p in (WORKER, BANK)
        or p.startswith("tenant-")
        or (silo is not None and silo not in set(silos))
    )


def owned_by_fl(grant: Grant, silos: Iterable[int]) -> bool:
    """Whether provisioning the federated side for ``silos`` manages ``grant``: the
    server's ACLs and those of these silos (e.g. the group of a model no longer trained)."""
    if not in_namespace(grant.name, ""):
        return False
    return grant.principal == FL_SERVER or _silo_of(grant.principal) in set(silos)


def ensure_credentials(
    clients_dir: Path, names: Iterable[str], bootstrap: str, ca: Path
) -> dict[str, KafkaIdentity]:
    """A client config (SASL_SSL, SCRAM-SHA-512, the CA) per principal in ``clients_dir``.

    Existing files keep their password (their bootstrap is updated if it moved); new
    principals get a random 192-bit password.
    """
    clients_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    clients_dir.chmod(0o700)
    out: dict[str, KafkaIdentity] = {}
    for name in names:
        path = clients_dir / f"{name}.conf"
        old = read_client_config(path) if path.exists() else None
        password = old.password if old is not None and old.password else secrets.token_urlsafe(24)
        wanted = KafkaIdentity(name, "SASL_SSL", password, ca, bootstrap=bootstrap)
        if old is None or (old.bootstrap, old.ca, old.protocol) != (bootstrap, ca, "SASL_SSL"):
            out[name] = write_client_config(path, wanted)
        else:
            out[name] = old
    return out
