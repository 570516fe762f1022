"""A silo's offsets advance only once the server has used that silo's reply.

The ClientApp no longer commits when it replies: its reply says where its read ended
(:func:`attach_read_offsets`). When the server has aggregated the reply (its rows are in
the model and in the metrics) it records those offsets in its :class:`OffsetLedger`, and
every later train message carries the ledger (:meth:`OffsetLedger.add_to`). The silo's
ClientApp commits what the server confirmed before it reads (:func:`confirmed_for`), so
it reads from the end of its last *aggregated* reply:

- a reply lost with its node, or too late for its round, was never confirmed: its rows
  are read again and trained in a later round;
- a confirmation that does not reach the node (it died) is sent again with every train
  message: the node commits when it is back;
- the ledger is published with each round's metrics and restored when a ServerApp
  resumes, so a restarted server confirms what its predecessor aggregated;
- a server whose run ends sends one last confirm-only message (:func:`send_confirmations`).

A row is therefore counted in the whole-run metrics in exactly one aggregated round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

__all__ = [
    "CONFIRM_ONLY",
    "METRICS_KEY",
    "OffsetLedger",
    "attach_read_offsets",
    "confirmed_for",
    "read_offsets",
    "send_confirmations",
]

logger = logging.getLogger(__name__)

READ_RECORD = "read-offsets"
"""ConfigRecord of a reply: ``partitions``, ``next`` (offset after the last frame read) and
``stamps`` (that frame's Kafka timestamp, so a node can tell a recreated topic)."""
METRICS_KEY = "confirmed_offsets"
"""Key of the ledger in the published round metrics (and so in the model frame)."""
_SILOS, _PARTS, _NEXT, _STAMPS = (
    "confirmed-silos",
    "confirmed-partitions",
    "confirmed-next",
    "confirmed-stamps",
)
CONFIRM_ONLY = "confirm-only"
"""Config flag of the message a finishing server sends: commit what is confirmed, no round."""


Position = tuple[int, int]
"""(offset after the last record read, Kafka timestamp of that record)."""


def attach_read_offsets(
    reply: Message, next_offsets: Mapping[int, int], stamps: Mapping[int, int]
) -> Message:
    """Record in ``reply`` where the silo's read ended (per partition of its topic)."""
    parts = sorted(next_offsets)
    reply.content.config_records[READ_RECORD] = ConfigRecord(
        {
            "partitions": [int(p) for p in parts],
            "next": [int(next_offsets[p]) for p in parts],
            "stamps": [int(stamps.get(p, -1)) for p in parts],
        }
    )
    return reply


def _ints(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise ValueError(f"malformed {what}: expected a list of integers")
    return [int(v) for v in value]


def read_offsets(reply: Message) -> dict[int, Position]:
    """The positions :func:`attach_read_offsets` put in ``reply`` (empty if none)."""
    record = reply.content.config_records.get(READ_RECORD)
    if record is None:
        return {}
    parts = _ints(record.get("partitions", []), "read offsets")
    nexts = _ints(record.get("next", []), "read offsets")
    stamps = _ints(record.get("stamps", []), "read offsets")
    if not len(parts) == len(nexts) == len(stamps):
        raise ValueError("malformed read offsets: lists differ in length")
    return {p: (n, t) for p, n, t in zip(parts, nexts, stamps, strict=True)}


class OffsetLedger:
    """Per silo, per partition: the position up to which the server used the silo's rows."""

    def __init__(self, confirmed: Mapping[int, Mapping[int, Position]] | None = None) -> None:
        self.confirmed: dict[int, dict[int, Position]] = {
            int(s): {int(p): (int(o), int(t)) for p, (o, t) in parts.items()}
            for s, parts in (confirmed or {}).items()
        }

    def confirm(self, silo: int, positions: Mapping[int, Position]) -> None:
        """The server used the rows of ``silo`` read up to ``positions`` (its latest read:
        a recreated topic starts again at lower offsets, so the newest wins, not the max)."""
        mine = self.confirmed.setdefault(int(silo), {})
        for part, (offset, stamp) in positions.items():
            mine[int(part)] = (int(offset), int(stamp))

    def confirm_replies(self, silo_replies: Iterable[tuple[int, Message]]) -> None:
        for silo, reply in silo_replies:
            positions = read_offsets(reply)
            if positions:
                self.confirm(silo, positions)

    def add_to(self, config: ConfigRecord) -> ConfigRecord:
        """Put the ledger into a train message's config (four parallel int lists)."""
        rows = [
            (silo, part, offset, stamp)
            for silo in sorted(self.confirmed)
            for part, (offset, stamp) in sorted(self.confirmed[silo].items())
        ]
        for i, key in enumerate((_SILOS, _PARTS, _NEXT, _STAMPS)):
            config[key] = [row[i] for row in rows]
        return config

    def as_json(self) -> dict[str, dict[str, list[int]]]:
        return {
            str(s): {str(p): [o, t] for p, (o, t) in parts.items()}
            for s, parts in self.confirmed.items()
        }

    @classmethod
    def from_json(cls, doc: Any) -> OffsetLedger:
        """The ledger of a published round (``{}`` or None: an empty one)."""
        if not isinstance(doc, dict):
            return cls()
        return cls(
            {int(s): {int(p): (int(v[0]), int(v[1])) for p, v in parts.items()}
             for s, parts in doc.items()}
        )  # fmt: skip


def confirmed_for(config: ConfigRecord, silo: int) -> dict[int, Position]:
    """What a train message's config confirms for ``silo`` (partition -> position)."""
    lists = [
        _ints(config.get(k, []), "offset confirmation") for k in (_SILOS, _PARTS, _NEXT, _STAMPS)
    ]
    if len({len(v) for v in lists}) > 1:
        raise ValueError("malformed offset confirmation: lists differ in length")
    return {p: (n, t) for s, p, n, t in zip(*lists, strict=True) if s == silo}


def send_confirmations(
    grid: Any,
    ledger: OffsetLedger,
    timeout_s: float,
    model: tuple[ArrayRecord, ConfigRecord] | None = None,
) -> int:
    """Tell every node what is confirmed, without a round (the run ends); returns replies.

    ``model`` (the final parameters and their train config) rides along, so that a site
    relaying global models to its own cluster gets the last one too (app/fl/site_model.py).
    """
    from app.fl.strategy import send_and_receive, with_ttl  # Flower's Grid: ServerApp only

    base = ConfigRecord(dict(model[1])) if model is not None else ConfigRecord()
    base[CONFIRM_ONLY] = 1
    config = ledger.add_to(base)
    records: dict[str, Any] = {"config": config}
    if model is not None:
        records["arrays"] = model[0]
    messages = [
        Message(RecordDict(records), dst_node_id=node, message_type=MessageType.TRAIN)
        for node in grid.get_node_ids()
    ]
    return len(send_and_receive(grid, with_ttl(messages, timeout_s), timeout_s))
