"""Hostile variants of valid input records, shared by the schema, property and broker tests.

:func:`field_variants` replaces, drops or duplicates one field of a valid record at a
time with values chosen at the contract's edges (types, bounds, lengths, unicode, nulls,
huge numbers); :func:`raw_variants` are byte-level attacks (broken JSON, NaN, depth,
non-UTF-8, BOM, duplicated keys, lone surrogates). :func:`strict_json` is the parser the
schema side uses: RFC 8259 with its interoperability rules made hard (unique names,
finite double-sized numbers, no unpaired surrogates, UTF-8 only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson

NOW = 1_764_000_000.0

GOOD: dict[str, dict[str, Any]] = {
    "transaction": {
        "txn_id": "t-1", "customer_id": "c-1", "ts": NOW - 60, "amount": 12.5,
        "merchant_category": "grocery", "channel": "online", "country": "DE", "silo": 1,
        "label": 0, "attrs": {"risk": 0.5, "n": 3},
    },
    "customer": {
        "customer_id": "c-1", "silo": 2, "ts": NOW - 3600, "age": 33, "income_band": 3,
        "credit_limit": 8000, "segment": "premium", "tenure_months": 24,
        "home_country": "FR", "attrs": {"score": 1.5},
    },
    "chat": {
        "request_id": "r-1", "customer_id": "c-1", "question": "risk?", "intent": "risk",
        "reply_topic": "chatbot.responses", "sent_ts": NOW,
    },
}  # fmt: skip

EDGE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 4, 5, 15, 16, 120, 121, 1200, 1201, 0.5, -0.0, 3.0,
    1e9, 1e9 + 1, -1e9, -1e9 - 1, 1e11, 1e11 + 1, 2**31, 2**63, 2**64, 2**70, 1e300, -1e300,
    NOW * 1000, "", "x", "DE", "de", "DEU", "D", "A" * 32, "A" * 33, "A" * 64, "A" * 65,
    "é" * 64, "😀" * 64, "😀" * 65, "a\nb", "pos", "POS", "retail", "\x00", "..", ".",
    "chatbot.responses", "bad topic", "x" * 249, "x" * 250, [], [1], {}, {"a": 1},
    {"a": "1"}, {"a": None}, {"": 1}, {"k" * 65: 1}, {"a": 1e10}, {"a": True},
    {f"k{i}": i for i in range(65)}, {f"k{i}": i for i in range(64)}, "q" * 2000, "q" * 2001,
]  # fmt: skip
"""Values tried in every field (also where they make no sense: that is the point)."""


def dumps(obj: Any) -> bytes:
    """JSON of ``obj``; integers beyond 64 bits are written as JSON integers too."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode()


def field_variants(kind: str) -> Iterator[tuple[str, bytes]]:
    """``(label, raw)``: one field of the valid record changed, dropped or added."""
    good = GOOD[kind]
    yield "valid", dumps(good)
    for name in [*good, "unknown_field"]:
        if name in good:
            yield f"drop {name}", dumps({k: v for k, v in good.items() if k != name})
        for i, value in enumerate(EDGE_VALUES):
            yield f"{name}={i}", dumps({**good, name: value})


def raw_variants(kind: str) -> Iterator[tuple[str, bytes]]:
    """``(label, raw)``: attacks on the bytes rather than on one field."""
    good = dumps(GOOD[kind])
    first = next(iter(GOOD[kind]))
    yield "empty", b""
    yield "truncated", good[:-3]
    yield "array", b"[" + good + b"]"
    yield "string", b'"hello"'
    yield "number", b"42"
    yield "json null", b"null"
    yield "NaN", good.replace(b'"ts":', b'"ts":NaN,"x":') if b'"ts":' in good else b"NaN"
    yield "Infinity", good[:-1] + b',"sent_ts":Infinity}'
    yield "1e400", good[:-1] + b',"sent_ts":1e400}'
    yield "deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    yield "latin-1", good.replace(b"c-1", b"c-\xe9")
    yield "utf-16", good.decode().encode("utf-16")
    yield "bom", b"\xef\xbb\xbf" + good
    yield "lone surrogate", good.replace(b'"c-1"', b'"c-\\ud800"')
    yield "escaped pair", good.replace(b'"c-1"', b'"c-\\ud83d\\ude00"')
    yield "duplicated first key", b"{" + dumps(first)[0:0] + good[1:-1] + b"," + good[1:]
    yield "duplicated customer_id", good[:-1] + b',"customer_id":"c-2"}'
    yield "spaced duplicate", good[:-1] + b' , "customer_id" : "c-1"}'
    yield "trailing comma", good[:-1] + b",}"
    yield "comment", good[:-1] + b"/* x */}"
    yield "single quotes", good.replace(b'"', b"'")
    yield "trailing garbage", good + b"x"
    yield "whitespace", b" \n\t" + good + b" \r\n"
    yield "raw control char", good.replace(b'"c-1"', b'"c-\x01"')
    yield "escaped control char", good.replace(b'"c-1"', b'"c-\\u0001"')
    yield "escaped quote colon", good.replace(b'"c-1"', b'"c\\":1"')
    yield "nested extra", good[:-1] + b',"extra":{"a":[{"b":{"a":1,"a":2}}]}}'
    yield "nested extra ok", good[:-1] + b',"extra":{"a":[{"b":{"a":1,"c":2}}]}}'


def corpus(kind: str) -> list[tuple[str, bytes]]:
    return [*field_variants(kind), *raw_variants(kind)]


class NotStrictJson(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise NotStrictJson("duplicated name")
    return out


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJson("number beyond a double")
    return value


def _int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise NotStrictJson("number beyond a double") from None
    return value


def _constant(name: str) -> Any:
    raise NotStrictJson(f"{name} is not JSON")


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # unpaired surrogates raise UnicodeEncodeError
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_json(raw: bytes) -> Any:
    """Parse RFC 8259 JSON strictly; raises ValueError (or RecursionError) if it is not."""
    text = raw.decode("utf-8")  # UTF-8 only (RFC 8259 8.1), BOM then fails in json.loads
    doc = json.loads(
        text,
        object_pairs_hook=_pairs,
        parse_float=_float,
        parse_int=_int,
        parse_constant=_constant,
    )
    _check_strings(doc)
    return doc
