"""topics/schemas and app.features.validation accept exactly the same records.

Every record of a hostile corpus (each field of a valid record set to edge values, dropped
or added; byte-level attacks) goes through both: the JSON Schema side is a strict RFC 8259
parse (tests/hostile_corpus.strict_json) plus ``jsonschema`` validation (draft 2020-12),
the code side is ``parse_*``. Schema-valid <=> accepted, for every record.

Outside both by design: the 64 KiB record size (a transport limit; the corpus stays below
it), the configured silos, the key check and the event-time policy (they depend on the
deployment and the worker's clock, not on the record).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from app.features.validation import (
    MAX_RECORD_BYTES,
    InvalidRecord,
    parse_chat_request,
    parse_customer,
    parse_transaction,
)
from tests.hostile_corpus import corpus, strict_json
from topics.catalogue import SCHEMA_DIR

CASES = {
    "transaction": (parse_transaction, "transaction.schema.json"),
    "customer": (parse_customer, "customer.schema.json"),
    "chat": (parse_chat_request, "chatbot_request.schema.json"),
}


def _validator(schema_file: str) -> Any:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_accepts(validator: Any, raw: bytes) -> bool:
    try:
        doc = strict_json(raw)
    except (ValueError, RecursionError):
        return False
    return bool(validator.is_valid(doc))


def _code_accepts(parse: Any, raw: bytes) -> bool:
    try:
        parse(raw)
    except InvalidRecord:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(CASES))
def test_schema_valid_iff_accepted(kind: str) -> None:
    # Prepare
    parse, schema_file = CASES[kind]
    validator = _validator(schema_file)
    records = corpus(kind)
    assert all(len(raw) <= MAX_RECORD_BYTES for _label, raw in records if _label != "deep")

    # Execute
    verdicts = [(label, _schema_accepts(validator, raw), _code_accepts(parse, raw))
                for label, raw in records]  # fmt: skip

    # Assert: the same verdict on every record, and the corpus tests both sides
    disagree = [(label, s, c) for label, s, c in verdicts if s != c]
    assert disagree == [], f"schema vs code (label, schema, code): {disagree[:10]}"
    accepted = sum(c for _l, _s, c in verdicts)
    assert 20 < accepted < len(verdicts) - 100, (accepted, len(verdicts))
