"""Who asks the chatbot, where its answer goes and which customers it may ask about.

Pure code. A tenant is a silo (``silo-<id>``: a branch, a member bank) or an operator.
Each has its own request and responses topic (``topics.chat_requests`` /
``topics.chat_responses``); the request topic a record arrived on is the tenant's
identity, so the worker never trusts anything in the record itself for it. Once the
broker enforces ACLs (only tenant T may write T's request topic, only T may read T's
responses topic) that identity is proven; until then it is a routing convention.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from topics import chat_requests, chat_responses, dlq, namespaced, tenant_silo

__all__ = ["ChatRoute", "chat_routes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatRoute:
    """One tenant's topics and what it may see.

    Attributes
    ----------
    tenant : str
        ``silo-<id>`` or an operator's name.
    silo : int or None
        The silo whose customers a silo tenant may ask about; None for an operator (any).
    requests, responses, dead_letters : str
        The tenant's request topic, its responses topic (the only place its replies go)
        and the dead-letter topic of its requests.
    """

    tenant: str
    silo: int | None
    requests: str
    responses: str
    dead_letters: str

    def may_see(self, customer_silo: int | None) -> bool:
        """Operators see every customer; a silo tenant only customers known in its silo."""
        return self.silo is None or customer_silo == self.silo


def chat_routes(tenants: Sequence[str], namespace: str = "") -> dict[str, ChatRoute]:
    """The route of every tenant, keyed by its (namespaced) request topic."""
    routes = {}
    for tenant in tenants:
        requests = namespaced(chat_requests(tenant), namespace)
        routes[requests] = ChatRoute(
            tenant=tenant,
            silo=tenant_silo(tenant),
            requests=requests,
            responses=namespaced(chat_responses(tenant), namespace),
            dead_letters=namespaced(dlq(chat_requests(tenant)), namespace),
        )
    return routes
