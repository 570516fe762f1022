"""In-memory reference pipeline (in the spirit of Bytewax's TestingSource/TestingSink).

:func:`run_reference` runs the stream worker's logic over a list of events, with the very
same functions the Faust agents call: ``parse_*``, ``check_key``, ``check_silo``,
``route_silo``, ``join_transaction``, the profile history's as-of lookup and the window
state codec (the state goes through ``encode_state``/``decode_state`` on every event, as it
does through the Faust table). Tests compare the worker's output against it.

The join is in event time (:mod:`app.features.profiles`): a transaction joins the latest
profile version with ``ts`` at or before its own, whatever the order the two topics are
read in. So the reference reads a *phase* (the events produced together, before the worker
could have joined any of them) profiles first, then transactions in order:

* ``("customer", key, raw)``: parse, check key and silo, add to the customer's history;
  ``raw`` None is a tombstone: the customer's profiles and window state are deleted (in
  a phase, before its transactions: the worker applies it to what it read before);
* ``("transaction", key, raw)``: parse, check key, look up the profile as of its ``ts``,
  route to a silo (before touching the window state, so a rejected transaction leaves no
  trace), join, collect the row.

A profile of a later phase is "late" for the transactions of earlier phases (they were
joined before it was read), as in the worker. Invalid records become dead letters
``(raw, reason)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.features.profiles import HistoryBounds, ProfileHistory
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
from app.features.window_state import decode_state, encode_state

__all__ = ["Event", "ReferenceOutput", "run_reference", "run_reference_phases"]

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
        Latest profile (largest event time) per customer id.
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
    events: Iterable[Event],
    spec: FeatureSpec,
    silo_ids: Sequence[int],
    bounds: HistoryBounds | None = None,
) -> ReferenceOutput:
    """Run the worker logic over ``events`` as one phase; see the module docstring.

    Raises
    ------
    ValueError
        For an event kind other than ``"customer"`` or ``"transaction"``.
    """
    return run_reference_phases([list(events)], spec, silo_ids, bounds)


def run_reference_phases(
    phases: Iterable[Sequence[Event]],
    spec: FeatureSpec,
    silo_ids: Sequence[int],
    bounds: HistoryBounds | None = None,
) -> ReferenceOutput:
    """Run the worker logic over ``phases`` one after the other (see the module docstring).

    Raises
    ------
    ValueError
        For an event kind other than ``"customer"`` or ``"transaction"``.
    """
    bounds = bounds or HistoryBounds()
    out = ReferenceOutput(rows={s: [] for s in silo_ids})
    histories: dict[str, ProfileHistory[Customer]] = {}
    states = out.states
    for phase in phases:
        for kind, _key, _raw in phase:
            if kind not in ("customer", "transaction"):
                raise ValueError(f"unknown event kind {kind!r}")
        for _kind, key, raw in (e for e in phase if e[0] == "customer"):
            try:
                if raw is None:  # tombstone: the customer's profiles and windows are deleted
                    cid = parse_tombstone_key(key)
                    histories.pop(cid, None)
                    states.pop(cid, None)
                    continue
                customer = parse_customer(raw)
                check_key(key, customer.customer_id)
                check_silo(customer.silo, silo_ids)
                histories.setdefault(customer.customer_id, ProfileHistory()).add(customer, bounds)
            except InvalidRecord as exc:
                out.dead_letters.append((raw or b"", exc.reason))
        for _kind, key, raw in (e for e in phase if e[0] == "transaction"):
            try:
                txn = parse_transaction(raw)
                cid = txn.customer_id
                check_key(key, cid)
                history = histories.get(cid)
                profile = None if history is None else history.as_of(txn.ts)
                silo = route_silo(txn, profile, silo_ids)
                result = join_transaction(spec, txn, profile, decode_state(states.get(cid)))
                states[cid] = encode_state(result.new_state)
                out.rows[silo].append((txn.txn_id, result.row, result.label))
            except InvalidRecord as exc:
                out.dead_letters.append((raw or b"", exc.reason))
    for cid, history in histories.items():
        latest = history.latest()
        if latest is not None:
            out.profiles[cid] = latest
    return out
