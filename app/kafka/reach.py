"""Fail fast when the broker is unreachable, and keep librdkafka's own log lines quiet.

librdkafka logs every failed connection attempt (``%3|...|FAIL|... Connection refused``),
hundreds of lines a minute while a broker is down. Every client fedstream makes forwards
those lines to the Python logger ``librdkafka`` instead, which the CLI silences unless
``--log-level debug``. Commands check the broker once with a bounded wait before they
start (:func:`check_broker`), so a missing broker is one line after a few seconds, not a
hang or a wall of text.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "RDKAFKA_LOGGER",
    "BrokerUnreachable",
    "check_broker",
    "quiet_config",
    "set_client_log_level",
]

logger = logging.getLogger(__name__)

RDKAFKA_LOGGER = logging.getLogger("librdkafka")
"""Where librdkafka's own log lines go (forwarded when a client is polled)."""

DEFAULT_CONNECT_TIMEOUT_S = 5.0


class BrokerUnreachable(RuntimeError):
    """No broker answered within the connect timeout; the message is one sentence."""


def quiet_config() -> dict[str, Any]:
    """Client config entries that route librdkafka's log lines to :data:`RDKAFKA_LOGGER`."""
    return {"logger": RDKAFKA_LOGGER}


def set_client_log_level(debug: bool) -> None:
    """Show librdkafka's lines only when debugging (they repeat per retry otherwise)."""
    RDKAFKA_LOGGER.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    RDKAFKA_LOGGER.propagate = debug


def check_broker(bootstrap: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> int:
    """Ask the cluster for its metadata; returns how many brokers it has.

    Raises
    ------
    BrokerUnreachable
        When no broker answered within ``timeout_s`` seconds.
    """
    from app.kafka.security import client_config  # it imports this module

    admin = AdminClient(client_config(bootstrap))
    try:
        metadata = admin.list_topics(timeout=max(0.1, timeout_s))
    except KafkaException as exc:
        admin.poll(0)  # serves the queued log lines (shown under --log-level debug)
        raise BrokerUnreachable(
            f"could not reach Kafka at {bootstrap} within {timeout_s:g} s "
            f"({exc.args[0].str() if exc.args else exc}); is it running "
            "(`fedstream kafka start`, or --bootstrap HOST:PORT)?"
        ) from None
    return len(metadata.brokers)
