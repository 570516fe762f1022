"""The worker's table changelogs exist, laid out as the catalogue says, before Faust starts.

Left to Faust (faust-streaming 0.15.3, aiokafka 0.14.0), a fresh worker sometimes logged
"<group>-windows-changelog not found in cluster metadata" and then never committed:

- Faust declares a changelog with one CreateTopics request and goes on at once; its
  consumer, producer and the group leader's assignor read the topic from metadata that
  may not list it yet. The assignor then leaves it out ("Ignoring missing topic").
  Simulated (metadata answering "unknown topic" for a changelog during its first 8 s), 4
  of 28 fresh starts never committed: the commit waited in aiokafka's producer flush
  inside Faust's ``_commit_offsets``, while processing went on. Which wait exactly was
  not pinned down.
- Every aiokafka metadata request allows auto-creation (proven, 2 of 2 starts with the
  changelog created 3 s late). A client asking before the
  topic exists makes the broker (``auto.create.topics.enable``, Kafka's default) create it
  with ``num.partitions`` (1 here) and ``cleanup.policy=delete``; Faust's own create then
  reads "exists", and its producer crashes on the first write to partition 1 or above
  ("Unrecognized partition"): the worker goes on processing but never commits again.

So the worker applies :func:`topics.worker_changelogs` itself and waits until the broker's
metadata lists every partition with a leader; a changelog auto-created with too few
partitions is grown, a wrong cleanup policy corrected, and one with more partitions than
the inputs is refused with a clear error (Kafka cannot shrink it).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from app.kafka.admin import apply_catalogue
from topics import TopicSpec, worker_changelogs

__all__ = ["ChangelogSetupError", "ensure_changelogs", "ready_partitions"]

logger = logging.getLogger(__name__)


class ChangelogSetupError(RuntimeError):
    """The changelog topics could not be made ready (wrong layout, broker problem)."""


def ready_partitions(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int:
    """Partitions of ``topic`` with a leader in the broker's metadata (0 if not listed)."""
    meta = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return sum(1 for p in meta.partitions.values() if p.leader >= 0 and p.error is None)


def ensure_changelogs(
    admin: AdminClient, input_partitions: int, namespace: str = "", timeout_s: float = 60.0
) -> list[TopicSpec]:
    """Create or repair the worker's changelogs and wait until they are usable.

    Returns the specs applied; raises :class:`ChangelogSetupError`.
    """
    specs = worker_changelogs(input_partitions, namespace)
    try:
        report = apply_catalogue(admin, specs)
    except KafkaException as exc:
        raise ChangelogSetupError(f"could not apply the worker's changelogs: {exc}") from None
    if report.problems:
        raise ChangelogSetupError("; ".join(report.problems))
    for name in report.grown + report.updated:
        logger.warning("changelog %s did not match the catalogue; repaired", name)
    deadline = time.monotonic() + timeout_s
    for spec in specs:
        while (ready := ready_partitions(admin, spec.name)) < spec.partitions:
            if time.monotonic() > deadline:
                raise ChangelogSetupError(
                    f"{spec.name}: {ready} of {spec.partitions} partitions have a leader "
                    f"after {timeout_s:.0f} s"
                )
            time.sleep(0.2)
    return specs
