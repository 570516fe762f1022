"""Dead-letter records (``topics/schemas/dead_letter.schema.json``) that always fit.

A dead letter carries the reason, the source topic/partition/offset and the original key
and value bytes (base64). Input topics accept records of up to 16 MiB, but base64 makes
them a third larger and a DLQ topic (or a cluster) may accept only Kafka's default of
1 MiB: a dead letter that cannot be produced is a lost record. So the envelope is bounded
by :data:`MAX_DEAD_LETTER_BYTES`: when the original bytes do not fit, the record keeps a
prefix of :data:`KEPT_PREFIX_BYTES`, says ``"truncated": true``, and gives the full size
and SHA-256 of the original key and value, so the record can still be found and proven.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

import orjson

__all__ = [
    "KEPT_PREFIX_BYTES",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_DEAD_LETTER_KEY_BYTES",
    "dead_letter",
    "dead_letter_key",
]

logger = logging.getLogger(__name__)

MAX_DEAD_LETTER_BYTES = 900_000
"""Largest encoded dead letter: below Kafka's default ``max.message.bytes`` (1 MiB)."""
KEPT_PREFIX_BYTES = 64 * 1024
"""Bytes of an original value (and key) kept when the whole does not fit."""
MAX_DEAD_LETTER_KEY_BYTES = 1024
"""Longest original key used as the dead letter's own Kafka key (else no key)."""
_MAX_REASON = 1000
_ENVELOPE = 300  # the two hash fields and quotes: generous upper bound


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def dead_letter(
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now_ms: int | None = None,
) -> bytes:
    """The encoded dead letter; at most :data:`MAX_DEAD_LETTER_BYTES` bytes, always."""
    reason = reason[:_MAX_REASON].encode("utf-8", "replace").decode()  # no lone surrogates
    key_n = None if key is None else len(key)
    value_n = None if value is None else len(value)
    doc: dict[str, Any] = {
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": int(time.time() * 1000) if now_ms is None else now_ms,
        "key_b64": None,
        "value_b64": None,
        "key_bytes": key_n,
        "value_bytes": value_n,
        "truncated": False,
    }
    whole = len(orjson.dumps(doc)) + _b64_len(key_n or 0) + _b64_len(value_n or 0) + _ENVELOPE
    truncated = doc["truncated"] = whole > MAX_DEAD_LETTER_BYTES
    if key is not None:
        doc["key_b64"] = _b64(key[:KEPT_PREFIX_BYTES] if truncated else key)
    if value is not None:
        doc["value_b64"] = _b64(value[:KEPT_PREFIX_BYTES] if truncated else value)
    if truncated:
        doc["key_sha256"] = None if key is None else hashlib.sha256(key).hexdigest()
        doc["value_sha256"] = None if value is None else hashlib.sha256(value).hexdigest()
    return orjson.dumps(doc)


def dead_letter_key(key: bytes | None) -> bytes | None:
    """Kafka key of the dead letter: the original key unless it is too long."""
    if key is None or len(key) > MAX_DEAD_LETTER_KEY_BYTES:
        return None
    return key
