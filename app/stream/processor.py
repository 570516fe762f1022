"""What the stream worker does with each record, independent of Faust.

The Faust agents (``app.stream.worker``) decode nothing and decide nothing themselves: they
hand raw records to a :class:`StreamProcessor` and send what it returns. That keeps the
worker testable from in-memory lists and keeps the logic identical to the reference
pipeline (``app.features.reference``), which calls the same pure functions.

Profiles are versioned (:mod:`app.features.profiles`): a transaction joins the profile
valid at its event time, so the rows do not depend on how the two input topics interleave.

State is write-behind: profile histories and window states live in dictionaries and are written to
the changelog-backed Faust tables once per commit for every customer that changed (see
``dirty_*``), instead of one table write per event. A table write costs a changelog record,
and per-event writes cut throughput about five-fold (measured).

Each stored window state carries the offset of the last transaction applied to it. After a
crash the worker resumes from the last committed offset while the recovered state may
already include a few later events (written just before the crash); those are recognised by
their offset and not applied twice.

A tombstone on ``bank.customers`` (null value) deletes the customer: the profile and the
window state leave the caches at once and the tables (and so their changelogs, with
tombstones) at the next commit (``take_deleted``). Event times are checked against the
worker's clock (:class:`app.features.event_time.TimePolicy`) before anything is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.features.batcher import SiloBatchers
from app.features.dead_letter import dead_letter, dead_letter_key
from app.features.event_time import TimePolicy
from app.features.profiles import HistoryBounds, ProfileHistory, decode_history, encode_history
from app.features.records import Customer, Transaction
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
from app.features.windows import CustomerWindows, WindowFeatures

__all__ = [
    "InvalidRecord",
    "Joined",
    "Scorer",
    "StoredState",
    "StreamCounters",
    "StreamProcessor",
    "dead_letter",
    "dead_letter_key",
    "decode_stored_state",
    "encode_stored_state",
]

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], float]
"""Risk score of one feature row (the current global model), or None when unscored."""


@dataclass(slots=True)
class StoredState:
    """A customer's window state and the offset of the last transaction applied to it."""

    windows: CustomerWindows
    offset: int = -1


def encode_stored_state(state: StoredState) -> bytes:
    return state.offset.to_bytes(8, "little", signed=True) + encode_state(state.windows)


def decode_stored_state(data: bytes | None) -> StoredState:
    if not data:
        return StoredState(CustomerWindows())
    return StoredState(decode_state(data[8:]), int.from_bytes(data[:8], "little", signed=True))


@dataclass(slots=True)
class StreamCounters:
    customers: int = 0
    transactions: int = 0
    invalid: int = 0
    deleted: int = 0
    replayed: int = 0
    frames: int = 0
    unknown_profile: int = 0
    per_silo_rows: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Joined:
    """One processed transaction: its silo, features, score and any frames now complete."""

    txn: Transaction
    silo: int
    window: WindowFeatures
    profile_missing: bool
    score: float | None
    frames: list[tuple[int, bytes]]
    row: np.ndarray | None = None
    """The feature row: a view into the batch buffer, valid until the next transaction."""


class StreamProcessor:
    """Validation, join, vectorisation and micro-batching of one worker's partitions.

    Parameters
    ----------
    spec : FeatureSpec
        Feature layout.
    silo_ids : tuple of int
        Configured silos; others are invalid.
    max_rows, max_ms : int
        Micro-batch limits.
    load_profile, load_state : callable
        Read-through to the durable tables on a cache miss (bytes or None).
    time_policy : TimePolicy or None
        Plausible event times around the worker's clock (None: the defaults).
    history_bounds : HistoryBounds or None
        How many profile versions to keep per customer (None: the defaults).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        silo_ids: tuple[int, ...],
        max_rows: int,
        max_ms: int,
        load_profile: Callable[[str], bytes | None] = lambda _cid: None,
        load_state: Callable[[str], bytes | None] = lambda _cid: None,
        time_policy: TimePolicy | None = None,
        history_bounds: HistoryBounds | None = None,
    ) -> None:
        self.spec = spec
        self.silo_ids = silo_ids
        self.batchers = SiloBatchers(silo_ids, spec.version, spec.n_features, max_rows, max_ms)
        self.counters = StreamCounters(per_silo_rows=dict.fromkeys(silo_ids, 0))
        self.scorer: Scorer | None = None
        self._load_profile = load_profile
        self._load_state = load_state
        self.history_bounds = history_bounds or HistoryBounds()
        self._profiles: dict[str, ProfileHistory[Customer]] = {}
        self._states: dict[str, StoredState] = {}
        self._dirty_profiles: dict[int, set[str]] = {}
        self._partition_of: dict[str, int] = {}
        self._dirty_states: dict[int, set[str]] = {}
        self._deleted_profiles: dict[int, set[str]] = {}
        self._deleted_states: dict[int, set[str]] = {}
        self.time_policy = time_policy or TimePolicy()

    # -- profiles -------------------------------------------------------------------------
    def on_customer(
        self, raw: bytes, key: bytes | None, partition: int, now_ms: int | None = None
    ) -> Customer:
        """Validate and add a profile version to its history; raises InvalidRecord.

        ``now_ms`` is the worker's clock for the event-time check (None: no check).
        """
        customer = parse_customer(raw)
        cid = customer.customer_id
        check_key(key, cid)
        check_silo(customer.silo, self.silo_ids)
        if now_ms is not None:
            self.time_policy.check(customer.ts, now_ms / 1000.0)
        self.history(cid).add(customer, self.history_bounds)
        self._partition_of[cid] = partition
        self._dirty_profiles.setdefault(partition, set()).add(cid)
        self._deleted_profiles.get(partition, set()).discard(cid)
        self.counters.customers += 1
        return customer

    def delete_customer(self, key: bytes | None, partition: int) -> str:
        """Apply a tombstone: forget the profile and window state; returns the customer id.

        Raises
        ------
        InvalidRecord
            If the key is not a customer id (then there is nothing to delete).
        """
        cid = parse_tombstone_key(key)
        # not read through: the table still has it until commit
        self._profiles[cid] = ProfileHistory()
        self._states[cid] = StoredState(CustomerWindows())
        self._partition_of[cid] = partition
        self._dirty_profiles.get(partition, set()).discard(cid)
        self._dirty_states.get(partition, set()).discard(cid)
        self._deleted_profiles.setdefault(partition, set()).add(cid)
        self._deleted_states.setdefault(partition, set()).add(cid)
        self.counters.deleted += 1
        return cid

    def history(self, customer_id: str) -> ProfileHistory[Customer]:
        """The customer's profile versions (read through to the table on a miss)."""
        history = self._profiles.get(customer_id)
        if history is None:
            raw = self._load_profile(customer_id)
            try:
                history = decode_history(raw)
            except ValueError as exc:  # never stop the stream on a bad stored value
                logger.warning("profile of %s unreadable, starting empty: %s", customer_id, exc)
                history = ProfileHistory()
            self._profiles[customer_id] = history
        return history

    def profile(self, customer_id: str) -> Customer | None:
        """The customer's newest profile version (what the chatbot shows)."""
        return self.history(customer_id).latest()

    def window_state(self, customer_id: str) -> StoredState:
        state = self._states.get(customer_id)
        if state is None:
            state = self._states[customer_id] = decode_stored_state(self._load_state(customer_id))
        return state

    # -- transactions -----------------------------------------------------------------------
    def on_transaction(
        self,
        raw: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
        now_ms: int,
        txn: Transaction | None = None,
    ) -> Joined | None:
        """Validate, join, score and batch one transaction; raises InvalidRecord.

        ``txn`` is ``raw`` already parsed, if the caller needed it first. Returns None for
        a transaction already applied before a crash (see module doc).
        """
        if txn is None:
            txn = parse_transaction(raw)
        cid = txn.customer_id
        check_key(key, cid)
        self.time_policy.check(txn.ts, now_ms / 1000.0)
        profile = self.history(cid).as_of(txn.ts)
        silo = route_silo(txn, profile, self.silo_ids)
        stored = self.window_state(cid)
        if offset <= stored.offset:
            self.counters.replayed += 1
            return None
        batcher = self.batchers[silo]
        result = join_transaction(self.spec, txn, profile, stored.windows, batcher.next_row())
        stored.offset = offset
        self._dirty_states.setdefault(partition, set()).add(cid)
        if self._deleted_states:
            self._deleted_states.get(partition, set()).discard(cid)
        self._partition_of[cid] = partition
        score = self.scorer(result.row) if self.scorer is not None else None
        frame = batcher.add(result.row, result.label, score, txn.ts, now_ms)
        counters = self.counters
        counters.transactions += 1
        counters.per_silo_rows[silo] += 1
        if profile is None:
            counters.unknown_profile += 1
        frames = [(silo, frame)] if frame is not None else []
        self._count(frames)
        return Joined(txn, silo, result.window, profile is None, score, frames, result.row)

    def set_model(
        self, scorer: Scorer | None, version: str | None, round_: int | None, now_ms: int
    ) -> list[tuple[int, bytes]]:
        """Score the next rows with ``scorer`` (model ``version`` of round ``round_``).

        Returns the frames of rows scored by the previous model (the caller sends them).
        """
        frames = self.batchers.set_model(version, round_, now_ms)
        self.scorer = scorer
        self._count(frames)
        return frames

    def _count(self, frames: list[tuple[int, bytes]]) -> None:
        self.counters.frames += len(frames)

    def flush_due(self, now_ms: int) -> list[tuple[int, bytes]]:
        frames = self.batchers.flush_due(now_ms)
        self._count(frames)
        return frames

    def flush_all(self, now_ms: int) -> list[tuple[int, bytes]]:
        frames = self.batchers.flush_all(now_ms)
        self._count(frames)
        return frames

    # -- write-behind --------------------------------------------------------------------------
    def take_dirty(self) -> tuple[dict[int, dict[str, bytes]], dict[int, dict[str, bytes]]]:
        """Per partition, the profiles and encoded window states changed since the last call."""
        profiles = {
            partition: {cid: encode_history(self._profiles[cid]) for cid in ids}
            for partition, ids in self._dirty_profiles.items()
        }
        self._dirty_profiles = {}
        states: dict[int, dict[str, bytes]] = {}
        for partition, ids in self._dirty_states.items():
            states[partition] = {cid: encode_stored_state(self._states[cid]) for cid in ids}
        self._dirty_states = {}
        return profiles, states

    def take_deleted(self) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
        """Per partition, the customers whose profile / window state must leave the tables."""
        profiles, self._deleted_profiles = self._deleted_profiles, {}
        states, self._deleted_states = self._deleted_states, {}
        return profiles, states

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop the cached customers of ``partitions`` (all if None), e.g. revoked ones.

        Their new owner recovers them from the changelog; if they come back here, Faust
        recovers the local store from the changelog too, so the tables are the truth again.
        """
        if partitions is None:
            self._profiles.clear()
            self._states.clear()
            self._partition_of.clear()
            return
        gone = [cid for cid, p in self._partition_of.items() if p in partitions]
        for cid in gone:
            self._profiles.pop(cid, None)
            self._states.pop(cid, None)
            del self._partition_of[cid]
