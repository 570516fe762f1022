"""Where a running pipeline keeps its state, and how that state is written to a table.

The runner (:mod:`app.pipeline.runner`) asks a :class:`StateStore` for two things:

* the versioned history of a table key (``history``), and
* the per-key state of the stream (``key_state``): one :class:`KeyWindows` per window
  step and the offset of the last record applied to it.

:class:`MemoryStore` keeps them in dictionaries (tests, ``run_pipeline``, the baseline).
The worker's store (:class:`app.stream.processor.DurableStore`) reads through to Faust's
changelog-backed tables on a miss and writes back what changed once per commit, using
the encodings below. Customer histories keep the table format of
:func:`app.features.profiles.encode_history`; key states and ``json`` table histories
are tagged JSON, so a value of another format is recognised and refused (the key then
starts empty, with a warning) instead of being misread.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from app.features.profiles import ProfileHistory, decode_history, encode_history
from app.pipeline.windows import KeyWindows

__all__ = [
    "KeyState",
    "MemoryStore",
    "StateStore",
    "TableVersion",
    "decode_key_state",
    "decode_table_history",
    "encode_key_state",
    "encode_table_history",
]

logger = logging.getLogger(__name__)

_STATE_TAG = "fedstream.key-state.1"
_TABLE_TAG = "fedstream.table-history.1"


@dataclass(slots=True)
class TableVersion:
    """A version of a ``json`` table row (what the history keeps)."""

    values: dict[str, Any]
    ts: float


@dataclass(slots=True)
class KeyState:
    """A stream key's window states (one per window step) and its last applied offset."""

    windows: list[KeyWindows] = field(default_factory=list)
    offset: int = -1

    def step(self, index: int) -> KeyWindows:
        while len(self.windows) <= index:
            self.windows.append(KeyWindows())
        return self.windows[index]


class StateStore(Protocol):
    """What the runner needs to read and change its state (see the module docstring)."""

    def history(self, topic: str, key: str) -> ProfileHistory[Any] | None:
        """The key's history, or None if the table has no version of it."""

    def history_for_update(self, topic: str, key: str) -> ProfileHistory[Any]:
        """The key's history (created if absent); the caller is about to change it."""

    def key_state(self, key: str) -> KeyState:
        """The stream key's state (created empty if absent)."""

    def state_changed(self, key: str) -> None:
        """The key's state was changed by the batch being processed."""


class MemoryStore:
    """State in dictionaries: histories per table topic, key states of the stream."""

    def __init__(self) -> None:
        self.histories: dict[str, dict[str, ProfileHistory[Any]]] = {}
        self.states: dict[str, KeyState] = {}

    def history(self, topic: str, key: str) -> ProfileHistory[Any] | None:
        return self.histories.get(topic, {}).get(key)

    def history_for_update(self, topic: str, key: str) -> ProfileHistory[Any]:
        return self.histories.setdefault(topic, {}).setdefault(key, ProfileHistory())

    def key_state(self, key: str) -> KeyState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = KeyState()
        return state

    def state_changed(self, key: str) -> None:
        """Nothing to track in memory."""


# -- encodings -----------------------------------------------------------------------------
def _num(value: Any) -> float:
    """JSON null back to NaN (orjson writes NaN as null)."""
    return math.nan if value is None else float(value)


def _sorted(values: set[Any] | frozenset[Any]) -> list[Any]:
    """A set as a list in a fixed order (equal states encode to equal bytes)."""
    try:
        return sorted(values)
    except TypeError:  # mixed types in one column
        return sorted(values, key=repr)


def _set_as_list(value: Any) -> list[Any]:
    """orjson's ``default`` for the sets in buckets: a sorted list (see :func:`_sorted`)."""
    if isinstance(value, (set, frozenset)):
        return _sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _encode_windows(w: KeyWindows) -> list[Any]:
    # bucket: [count, sums..., maxes..., sets..., latest ts, ids-or-None]; orjson turns the
    # sets into sorted lists itself (_set_as_list), no Python pass over every slot
    buckets = [[start, b[:-1], b[-1]] for start, b in w.buckets.items()]
    return [w.n, w.last_ts, w.sums, w.horizon, buckets]


def _decode_windows(obj: list[Any]) -> KeyWindows:
    w = KeyWindows()
    n, last_ts, sums, horizon, buckets = obj
    w.n = int(n)
    w.last_ts = None if last_ts is None else float(last_ts)
    w.sums = [_num(s) for s in sums]
    w.horizon = None if horizon is None else int(horizon)
    for start, slots, ids in buckets:
        bucket: list[Any] = [int(slots[0])]
        for x in slots[1:]:
            bucket.append(set(x) if isinstance(x, list) else _num(x))
        bucket.append(None if ids is None else set(ids))
        w.buckets[int(start)] = bucket
    return w


def encode_key_state(state: KeyState) -> bytes:
    """Table value of a stream key's state (tagged JSON)."""
    doc = [_STATE_TAG, state.offset, [_encode_windows(w) for w in state.windows]]
    try:  # the sets of a bucket hold one type each: sorted() is all orjson needs
        return orjson.dumps(doc, default=sorted)
    except orjson.JSONEncodeError:  # mixed types in one set
        return orjson.dumps(doc, default=_set_as_list)


def decode_key_state(data: bytes | bytearray | memoryview | None) -> KeyState:
    """Inverse of :func:`encode_key_state`; None or empty gives an empty state.

    Raises
    ------
    ValueError
        If ``data`` is not such a value (e.g. a window state of an older worker).
    """
    if not data:
        return KeyState()
    try:
        tag, offset, windows = orjson.loads(bytes(data))
        if tag != _STATE_TAG:
            raise ValueError(f"tag {tag!r}")
        return KeyState([_decode_windows(w) for w in windows], int(offset))
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a pipeline key state ({exc})") from None


def encode_table_history(schema: str, history: ProfileHistory[Any]) -> bytes:
    """Table value of a key's versions: the customer format, or tagged JSON for ``json``."""
    if schema == "customer":
        return encode_history(history)
    versions = [[v.ts, v.values] for v in history.versions]
    return orjson.dumps([_TABLE_TAG, versions], option=orjson.OPT_SERIALIZE_NUMPY)


def decode_table_history(schema: str, data: bytes | bytearray | memoryview | None
                         ) -> ProfileHistory[Any]:  # fmt: skip
    """Inverse of :func:`encode_table_history`.

    Raises
    ------
    ValueError
        If ``data`` is no history of this schema.
    """
    if schema == "customer":
        return decode_history(data)
    history: ProfileHistory[Any] = ProfileHistory()
    if not data:
        return history
    try:
        tag, versions = orjson.loads(bytes(data))
        if tag != _TABLE_TAG:
            raise ValueError(f"tag {tag!r}")
        history.versions = [TableVersion(dict(values), float(ts)) for ts, values in versions]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"not a table history ({exc})") from None
    return history
