"""Apply the topic catalogue to a broker idempotently and describe what exists."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from app.kafka.security import KafkaIdentity, client_config
from topics import TopicSpec

__all__ = [
    "ApplyReport",
    "TopicState",
    "apply_catalogue",
    "delete_topics",
    "describe_topics",
    "make_admin",
]

logger = logging.getLogger(__name__)

_TIMEOUT = 30.0


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker has it."""

    name: str
    partitions: int
    configs: dict[str, str]


@dataclass
class ApplyReport:
    created: list[str]
    updated: list[str]
    grown: list[str]
    unchanged: list[str]
    problems: list[str]


def make_admin(bootstrap: str, identity: KafkaIdentity | None = None) -> AdminClient:
    return AdminClient(client_config(bootstrap, identity))


def describe_topics(admin: AdminClient, names: list[str] | None = None) -> dict[str, TopicState]:
    """Partitions and the non-default configs of existing topics (all, or the named ones)."""
    metadata = admin.list_topics(timeout=_TIMEOUT)
    existing = {
        name: len(meta.partitions)
        for name, meta in metadata.topics.items()
        if not name.startswith("__") and (names is None or name in names)
    }
    if not existing:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in existing]
    states: dict[str, TopicState] = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result(timeout=_TIMEOUT)
        configs = {
            key: str(entry.value)
            for key, entry in entries.items()
            if not entry.is_default and entry.value is not None
        }
        states[resource.name] = TopicState(resource.name, existing[resource.name], configs)
    return states


def _wait_visible(
    admin: AdminClient, names: list[str], timeout_s: float = 10.0
) -> dict[str, TopicState]:
    """Describe ``names``, waiting briefly until the broker's metadata lists all of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = describe_topics(admin, names)
        if len(found) == len(names) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def apply_catalogue(admin: AdminClient, specs: list[TopicSpec]) -> ApplyReport:
    """Create missing topics, add partitions, and set configs; safe to run any number of times."""
    report = ApplyReport([], [], [], [], [])
    states = describe_topics(admin, [spec.name for spec in specs])
    missing = [spec for spec in specs if spec.name not in states]
    raced: list[str] = []
    if missing:
        new = [
            NewTopic(
                spec.name, num_partitions=spec.partitions, replication_factor=1, config=spec.configs
            )
            for spec in missing
        ]
        for name, future in admin.create_topics(new, operation_timeout=_TIMEOUT).items():
            try:
                future.result(timeout=_TIMEOUT)
                report.created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    # It exists but the broker's metadata did not list it yet (just created,
                    # or a concurrent apply won): reconcile it like any existing topic.
                    raced.append(name)
                else:
                    report.problems.append(f"{name}: {exc.args[0].str()}")
    if raced:
        states.update(_wait_visible(admin, raced))
        report.unchanged.extend(name for name in raced if name not in states)
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            continue
        changed = False
        if state.partitions < spec.partitions:
            future = admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name]
            future.result(timeout=_TIMEOUT)
            report.grown.append(spec.name)
            changed = True
        elif state.partitions > spec.partitions:
            report.problems.append(
                f"{spec.name}: has {state.partitions} partitions, catalogue says "
                f"{spec.partitions}; Kafka cannot remove partitions, left as is"
            )
        drift = {k: v for k, v in spec.configs.items() if state.configs.get(k) != v}
        if drift:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in drift.items()
            ]
            resource = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=entries)
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=_TIMEOUT)
            report.updated.append(spec.name)
            changed = True
        if not changed:
            report.unchanged.append(spec.name)
    logger.info(
        "topics: %d created, %d updated, %d grown, %d unchanged, %d problems",
        len(report.created), len(report.updated), len(report.grown),
        len(report.unchanged), len(report.problems),
    )  # fmt: skip
    return report


def delete_topics(admin: AdminClient, names: list[str] | None = None, prefix: str = "") -> int:
    """Delete ``names``, or every topic starting with ``prefix``; returns how many went.

    For benchmarks and tests cleaning up after themselves: a failure is logged, not raised.
    """
    if names is None:
        names = [t for t in admin.list_topics(timeout=10).topics if prefix and t.startswith(prefix)]
    deleted = 0
    for name, future in (admin.delete_topics(names) if names else {}).items():
        try:
            future.result(timeout=30)
            deleted += 1
        except KafkaException as exc:
            logger.warning("could not delete topic %s: %s", name, exc)
    return deleted
