"""A silo whose site runs its own Kafka cluster (``fl up --silo-kafka SILO=FILE``).

A SuperNode's Kafka connection is a per-node setting: its node config names the cluster
(``bootstrap``) and the silo principal's client config (``kafka-config``, with that
cluster's CA). By default both come from the operator's cluster; for a site with its own
cluster they come from the client config the site hands its SuperNode, and nothing of the
operator's is used for that silo's data. Beside that file, the site's ``site-<id>.conf``
(``fedstream topics apply --site <id>`` on the site) lets the SuperNode relay each global
model onto the site's ``fl.model.global`` (app/fl/site_model.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import topics
from app.kafka.principals import site_principal
from app.kafka.security import client_config, read_client_config

__all__ = ["SiteError", "check_site", "node_bootstrap", "parse_site_kafka", "site_relay"]

logger = logging.getLogger(__name__)


class SiteError(ValueError):
    """A site's Kafka setting is unusable; the message says which and why."""


def parse_site_kafka(values: list[str] | None) -> dict[int, Path]:
    """``["1=/site/silo-1.conf", ...]`` -> ``{1: Path(...)}`` (the CLI's --silo-kafka)."""
    out: dict[int, Path] = {}
    for value in values or []:
        silo, sep, path = value.partition("=")
        if not sep or not silo.strip().isdigit() or not path.strip():
            raise SiteError(
                f"--silo-kafka wants SILO=FILE (a silo id and a client config), got {value!r}"
            )
        out[int(silo)] = Path(path.strip()).expanduser()
    return out


def node_bootstrap(kafka_config: Path) -> str:
    """The cluster a site's client config names (its ``bootstrap.servers``)."""
    ident = read_client_config(kafka_config)
    if not ident.bootstrap:
        raise SiteError(f"{kafka_config} names no bootstrap.servers")
    return ident.bootstrap


def site_relay(silo: int, sites: dict[int, Path]) -> Path | None:
    """The client config of the principal relaying the global model onto silo ``silo``'s
    own cluster: ``site-<id>.conf`` beside the silo's (None: not a site, or it has none)."""
    if silo not in sites:
        return None
    path = sites[silo].parent / f"{site_principal(silo)}.conf"
    if path.exists():
        return path
    logger.warning("silo %s's site has no %s: its cluster gets no global model (run "
                   "`fedstream topics apply --site %s` there)", silo, path, silo)  # fmt: skip
    return None


def _describe(silo: int, kafka_config: Path, topic: str) -> None:
    """``kafka_config``'s principal reaches silo ``silo``'s cluster and sees ``topic``."""
    from confluent_kafka.admin import AdminClient

    ident = read_client_config(kafka_config)
    bootstrap = node_bootstrap(kafka_config)
    try:  # the principal may describe the topics it reads or writes, so it sees this one
        seen = AdminClient(client_config(bootstrap, ident)).list_topics(topic, timeout=10)
    except Exception as exc:
        raise SiteError(f"could not reach silo {silo}'s Kafka at {bootstrap}: {exc}") from None
    meta = seen.topics.get(topic)
    if meta is None or meta.error is not None:
        raise SiteError(f"topic {topic} is missing on silo {silo}'s cluster at {bootstrap} "
                        f"(or {ident.principal or 'that client'} may not describe it)")  # fmt: skip
    logger.info("silo %s: %s on its own cluster at %s as %s", silo, topic, bootstrap,
                ident.principal)  # fmt: skip


def check_site(silo: int, kafka_config: Path) -> None:
    """Silo ``silo``'s own cluster answers its principal and has the silo's batch topic
    (and, when the site has a model relay, the model topic that one writes)."""
    _describe(silo, kafka_config, topics.silo_batches(silo))
    relay = site_relay(silo, {silo: kafka_config})
    if relay is not None:
        _describe(silo, relay, topics.MODEL_GLOBAL)
