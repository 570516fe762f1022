"""The topic catalogue: the single source of truth for every Kafka topic fedstream uses.

No other module spells a topic name; import the constants and helpers from here.
"""

from topics.catalogue import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    CUSTOMERS,
    FEATURES_ENRICHED,
    FL_METRICS,
    MODEL_GLOBAL,
    OPERATOR,
    TRANSACTIONS,
    WORKER_APP_ID,
    TopicSpec,
    catalogue,
    chat_requests,
    chat_responses,
    chat_tenants,
    check_tenant,
    dlq,
    namespaced,
    silo_batches,
    silo_of_topic,
    silo_tenant,
    tenant_silo,
)

__all__ = [
    "CHATBOT_REQUESTS",
    "CHATBOT_RESPONSES",
    "CUSTOMERS",
    "FEATURES_ENRICHED",
    "FL_METRICS",
    "MODEL_GLOBAL",
    "OPERATOR",
    "TRANSACTIONS",
    "WORKER_APP_ID",
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
]
