"""In-memory reference pipeline (in the spirit of Bytewax's TestingSource/TestingSink).

:func:`run_reference` runs the stream worker's logic over a list of events, with the very
same functions the Faust agents call: ``parse_*``, ``check_key``, ``check_silo``,
``route_silo``, ``join_transaction`` and the window state codec (the state goes through
``encode_state``/``decode_state`` on every event, as it does through the Faust table).
Tests compare the worker's output against it.

Per event, in the order a worker sees them:

* ``("customer", key, raw)``: parse, check key and silo, store as the latest profile;
  ``raw`` None is a tombstone: the customer's profile and window state are deleted;
* ``("transaction", key, raw)``: parse, check key, route to a silo (before touching the
  window state, so a rejected transaction leaves no trace), join, collect the row.

Invalid records become dead letters ``(raw, reason)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.features.records import Customer
from app.features.routing import route_silo
from app.features.spec import FeatureSpec
from app.features.validation import (
    InvalidRecord,
    check_key,
    check_silo,
    parse_customer,
    parse_tombstone_key,
    parse_transaction,
)
from app.features.vectorize import join_transaction
from app.features.windows import decode_state, encode_state

__all__ = ["Event", "ReferenceOutput", "run_reference"]

logger = logging.getLogger(__name__)

Event = tuple[str, bytes | None, bytes | None]
"""``(kind, key, value)`` with kind ``"customer"`` or ``"transaction"``; value None = null."""
Row = tuple[str, npt.NDArray[np.float32], float]


@dataclass(slots=True)
class ReferenceOutput:
    """What the pipeline produced.

    Attributes
    ----------
    rows : dict
        Per silo, ``(txn_id, row, label)`` in processing order.
    dead_letters : list
        ``(raw value, reason)`` of every rejected record.
    profiles : dict
        Latest profile per customer id.
    states : dict
        Encoded window state per customer id.
    """

    rows: dict[int, list[Row]]
    dead_letters: list[tuple[bytes, str]] = field(default_factory=list)
    profiles: dict[str, Customer] = field(default_factory=dict)
    states: dict[str, bytes] = field(default_factory=dict)

    def arrays(
        self, silo: int, n_features: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``X [rows, n_features]`` and ``y [rows]`` of one silo."""
        rows = self.rows[silo]
        x = np.zeros((len(rows), n_features), np.float32)
        y = np.zeros(len(rows), np.float32)
        for i, (_txn_id, row, label) in enumerate(rows):
            x[i] = row
            y[i] = label
        return x, y


def run_reference(
    events: Iterable[Event], spec: FeatureSpec, silo_ids: Sequence[int]
) -> ReferenceOutput:
    """Run the worker logic over ``events``; see the module docstring.

    Raises
    ------
    ValueError
        For an event kind other than ``"customer"`` or ``"transaction"``.
    """
    out = ReferenceOutput(rows={s: [] for s in silo_ids})
    profiles = out.profiles
    states = out.states
    for kind, key, raw in events:
        try:
            if kind == "transaction":
                txn = parse_transaction(raw)
                cid = txn.customer_id
                check_key(key, cid)
                profile = profiles.get(cid)
                silo = route_silo(txn, profile, silo_ids)
                result = join_transaction(spec, txn, profile, decode_state(states.get(cid)))
                states[cid] = encode_state(result.new_state)
                out.rows[silo].append((txn.txn_id, result.row, result.label))
            elif kind == "customer" and raw is None:
                cid = parse_tombstone_key(key)
                profiles.pop(cid, None)
                states.pop(cid, None)
            elif kind == "customer":
                customer = parse_customer(raw)
                check_key(key, customer.customer_id)
                check_silo(customer.silo, silo_ids)
                profiles[customer.customer_id] = customer
            else:
                raise ValueError(f"unknown event kind {kind!r}")
        except InvalidRecord as exc:
            out.dead_letters.append((raw or b"", exc.reason))
    return out
