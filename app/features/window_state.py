"""The window state of one customer as a Faust table value: compact, deterministic JSON.

Split from :mod:`app.features.windows` (the aggregation itself); the processor, the offline
reference and the tests encode and decode states through here.
"""

from __future__ import annotations

import logging

import orjson

from app.features.windows import _IDS, _LAST, CustomerWindows

__all__ = ["STATE_VERSION", "decode_state", "encode_state"]

logger = logging.getLogger(__name__)

STATE_VERSION = 2
"""Layout version written by :func:`encode_state` (version 1 is still read)."""


def encode_state(state: CustomerWindows) -> bytes:
    """Compact, deterministic JSON for a Faust table value.

    Layout: ``[2, last_ts, count, total, horizon, buckets]``, each bucket
    ``[start, count, sum, max, [merchants], [countries], latest ts, [txn ids]]``.
    """
    buckets = [
        [start, b[0], b[1], b[2], sorted(b[3]), sorted(b[4]), b[_LAST], sorted(b[_IDS])]
        for start, b in state.buckets.items()
    ]
    return orjson.dumps(
        [STATE_VERSION, state.last_ts, state.count, state.total, state.horizon, buckets]
    )


def decode_state(data: bytes | bytearray | memoryview | None) -> CustomerWindows:
    """Inverse of :func:`encode_state`; empty or None gives a fresh state.

    Version 1 states (no bucket times or ids) are read too: a bucket's latest time is
    taken as the customer's latest time or its end, whichever is earlier.

    Raises
    ------
    ValueError
        If ``data`` is not an encoded state (the caller may log it and start fresh).
    """
    if not data:
        return CustomerWindows()
    try:
        doc = orjson.loads(data)
        version = doc[0]
        if version == 1:
            _v, last_ts, count, total, raw = doc
            horizon = None
            end = float("inf") if last_ts is None else float(last_ts)
            buckets = {
                int(s): [int(c), float(t), float(m), set(ms), set(cs), min(end, s + 3600.0), set()]
                for s, c, t, m, ms, cs in raw
            }
        elif version == STATE_VERSION:
            _v, last_ts, count, total, horizon, raw = doc
            buckets = {
                int(s): [int(c), float(t), float(m), set(ms), set(cs), float(lt), set(ids)]
                for s, c, t, m, ms, cs, lt, ids in raw
            }
        else:
            raise ValueError(f"unsupported window state version {version!r}")
        return CustomerWindows(
            buckets,
            None if last_ts is None else float(last_ts),
            int(count),
            float(total),
            None if horizon is None else int(horizon),
        )
    except (orjson.JSONDecodeError, TypeError, ValueError, LookupError) as exc:
        raise ValueError(f"corrupt window state: {exc}") from None
