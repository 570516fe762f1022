"""The worker's pipeline state: caches over the changelog-backed tables (no Faust here).

:class:`DurableStore` is the :class:`~app.pipeline.state.StateStore` of the worker. A
miss reads through to the table (``load_table`` for the joined table's histories,
``load_state`` for the stream's key states); every change marks the key dirty in its
partition, and :meth:`DurableStore.take_dirty` hands the encoded values to the worker,
which writes them to the Faust tables right before offsets are committed. A value that
cannot be decoded (another format, a bug) is logged and the key starts empty: the
stream never stops on a stored value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.features.profiles import ProfileHistory
from app.pipeline.dsl import Table
from app.pipeline.state import (
    KeyState,
    decode_key_state,
    decode_table_history,
    encode_key_state,
    encode_table_history,
)

__all__ = ["DurableStore"]

logger = logging.getLogger(__name__)

Dirty = dict[int, set[str]]


class DurableStore:
    """Read-through, write-behind state of one worker (see the module docstring).

    ``partition`` is the partition of the table record being stored;
    ``partition_of`` maps a stream key to its partition (set per batch by the processor).
    """

    def __init__(
        self,
        table: Table | None,
        load_table: Callable[[str], bytes | None],
        load_state: Callable[[str], bytes | None],
    ) -> None:
        self.table = table
        self._load_table = load_table
        self._load_state = load_state
        self._histories: dict[str, ProfileHistory[Any]] = {}
        self._states: dict[str, KeyState] = {}
        self.partition = 0
        self.partition_of: dict[str, int] = {}
        self._dirty_histories: Dirty = {}
        self._dirty_states: Dirty = {}
        self._deleted_histories: Dirty = {}
        self._deleted_states: Dirty = {}

    # -- StateStore ---------------------------------------------------------------------
    def _cached_history(self, key: str) -> ProfileHistory[Any]:
        history = self._histories.get(key)
        if history is None:
            assert self.table is not None
            try:
                history = decode_table_history(self.table.schema, self._load_table(key))
            except ValueError as exc:  # never stop the stream on a bad stored value
                logger.warning("history of %s unreadable, starting empty: %s", key, exc)
                history = ProfileHistory()
            self._histories[key] = history
        return history

    def history(self, topic: str, key: str) -> ProfileHistory[Any] | None:
        history = self._cached_history(key)
        return history if history.versions else None

    def history_for_update(self, topic: str, key: str) -> ProfileHistory[Any]:
        history = self._cached_history(key)
        partition = self.partition
        self.partition_of[key] = partition
        self._dirty_histories.setdefault(partition, set()).add(key)
        if self._deleted_histories:
            self._deleted_histories.get(partition, set()).discard(key)
        return history

    def key_state(self, key: str) -> KeyState:
        state = self._states.get(key)
        if state is None:
            try:
                state = decode_key_state(self._load_state(key))
            except ValueError as exc:  # e.g. a window state written by an older worker
                logger.warning("key state of %s unreadable, starting empty: %s", key, exc)
                state = KeyState()
            self._states[key] = state
        return state

    def peek_state(self, key: str) -> KeyState:
        """The key's state for reading (the chatbot); not marked changed."""
        return self.key_state(key)

    def state_changed(self, key: str) -> None:
        partition = self.partition_of.get(key, 0)
        self._dirty_states.setdefault(partition, set()).add(key)
        if self._deleted_states:
            self._deleted_states.get(partition, set()).discard(key)

    # -- tombstones ------------------------------------------------------------------------
    def delete(self, key: str, partition: int) -> None:
        """Forget the key's history and state now, and in the tables at the next commit."""
        self._histories[key] = ProfileHistory()  # not read through: the table has it still
        self._states[key] = KeyState()
        self.partition_of[key] = partition
        self._dirty_histories.get(partition, set()).discard(key)
        self._dirty_states.get(partition, set()).discard(key)
        self._deleted_histories.setdefault(partition, set()).add(key)
        self._deleted_states.setdefault(partition, set()).add(key)

    # -- write-behind -------------------------------------------------------------------
    def take_dirty(
        self, max_keys: int | None = None
    ) -> tuple[dict[int, dict[str, bytes]], dict[int, dict[str, bytes]]]:
        """Per partition, encoded histories and key states changed since the last call.

        ``max_keys``: encode at most that many (histories first); the rest stay dirty for
        the next call, so a caller can spread a large change set over several steps.
        """
        schema = self.table.schema if self.table is not None else "json"

        def history(key: str) -> bytes:
            return encode_table_history(schema, self._histories[key])

        histories, left = _take(self._dirty_histories, max_keys, history)
        states, _ = _take(self._dirty_states, left, lambda k: encode_key_state(self._states[k]))
        return histories, states

    @property
    def has_dirty(self) -> bool:
        """Whether any history or key state changed since the last :meth:`take_dirty`."""
        return any(self._dirty_histories.values()) or any(self._dirty_states.values())

    def take_deleted(self) -> tuple[Dirty, Dirty]:
        """Per partition, the keys whose history / key state must leave the tables."""
        histories, self._deleted_histories = self._deleted_histories, {}
        states, self._deleted_states = self._deleted_states, {}
        return histories, states

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop the cached keys of ``partitions`` (all if None)."""
        if partitions is None:
            self._histories.clear()
            self._states.clear()
            self.partition_of.clear()
            return
        gone = [k for k, p in self.partition_of.items() if p in partitions]
        for key in gone:
            self._histories.pop(key, None)
            self._states.pop(key, None)
            del self.partition_of[key]


def _take(
    dirty: Dirty, max_keys: int | None, encode: Callable[[str], bytes]
) -> tuple[dict[int, dict[str, bytes]], int | None]:
    """Encode and drop up to ``max_keys`` keys of ``dirty`` (None: all); returns the
    encoded values per partition and how many more may be taken."""
    out: dict[int, dict[str, bytes]] = {}
    for partition in list(dirty):
        if max_keys == 0:
            break
        keys = dirty[partition]
        if max_keys is None or len(keys) <= max_keys:
            out[partition] = {k: encode(k) for k in keys}
            del dirty[partition]
            if max_keys is not None:
                max_keys -= len(keys)
            continue
        out[partition] = {k: encode(k) for k in (keys.pop() for _ in range(max_keys))}
        max_keys = 0
    return out, max_keys
