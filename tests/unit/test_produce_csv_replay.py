"""CSV replay: time ordering, silo hashing, attrs, customers first, clear errors."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from app.produce.csv_replay import CsvReplay, CsvReplayError, parse_time, sanitise, stable_silo
from topics.catalogue import SCHEMA_DIR

VALIDATORS = {
    kind: Draft202012Validator(json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text()))
    for kind in ("customer", "transaction")
}

CSV = """\
when,user,Amount,Class,V 1,note,Merchant-Risk (%)
2024-01-01T00:00:10,alice,12.5,0,0.1,hello,3
2024-01-01T00:00:05,bob,-3,1,-1.5,x,
2024-01-01T00:00:10,bob,7,0,2,y,4.5
1704067200,carol,1,,nan,z,1
"""


def write(tmp_path: Path, text: str = CSV, name: str = "cards.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replay(path: Path, **kw: Any) -> list[Any]:
    args: dict[str, Any] = {"time_col": "when", "key_col": "user", "label_col": "Class"} | kw
    return list(CsvReplay(path, **args).events())


def test_events_in_time_order_stable_for_ties_with_customers_first(tmp_path: Path) -> None:
    # Execute
    events = replay(write(tmp_path))
    # Assert
    assert [(k, key) for k, key, _ in events] == [
        ("customer", "carol"), ("transaction", "carol"),
        ("customer", "bob"), ("transaction", "bob"),
        ("customer", "alice"), ("transaction", "alice"),  # file order among equal times
        ("transaction", "bob"),
    ]  # fmt: skip
    times = [v["ts"] for _, _, v in events]
    assert times == sorted(times)
    assert events[0][2] == {"customer_id": "carol", "silo": stable_silo("carol", 3), "ts": times[0]}


def test_values_satisfy_the_schemas(tmp_path: Path) -> None:
    for kind, _, value in replay(write(tmp_path)):
        decoded = orjson.loads(orjson.dumps(value))
        assert list(VALIDATORS[kind].iter_errors(decoded)) == []


def test_silo_hash_amount_label_attrs_and_txn_ids(tmp_path: Path) -> None:
    # Execute
    txns = {v["txn_id"]: v for k, _, v in replay(write(tmp_path), n_silos=5) if k == "transaction"}
    # Assert
    bob = txns["cards-3"]
    assert bob["silo"] == zlib.crc32(b"bob") % 5
    assert bob["amount"] == 0.0  # negative amounts are clamped
    assert bob["label"] == 1
    assert bob["attrs"] == {"V 1": -1.5}  # empty cell left out, text column ignored
    assert txns["cards-2"]["attrs"] == {"V 1": 0.1, "Merchant-Risk (%)": 3.0}  # names kept
    assert txns["cards-5"]["label"] is None
    assert "attrs" not in txns["cards-5"] or "V 1" not in txns["cards-5"]["attrs"]  # nan
    assert txns["cards-5"]["ts"] == 1704067200.0


def test_silo_column_txn_id_column_and_no_customers(tmp_path: Path) -> None:
    path = write(tmp_path, "t,k,silo,id,amount\n5,a,2,x1,3\n1,b,0,x2,4\n")
    events = replay(path, time_col="t", key_col="k", label_col=None, silo_col="silo",
                    txn_id_col="id", emit_customers=False)  # fmt: skip
    assert [(k, v["txn_id"], v["silo"], v["amount"]) for k, _, v in events] == [
        ("transaction", "x2", 0, 4.0),
        ("transaction", "x1", 2, 3.0),
    ]
    assert all("label" not in v and "attrs" not in v for _, _, v in events)


def test_epoch_and_iso_parsing() -> None:
    assert parse_time("1700000000.5") == 1700000000.5
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("2023-11-14 23:13:20+01:00", "iso") == 1700000000.0
    with pytest.raises(ValueError):
        parse_time("2023-11-14", "epoch")


def test_names_are_sanitised() -> None:
    assert sanitise("  Merchant-Risk (%) ") == "merchant_risk"
    assert sanitise("***") == "col"
    assert len(sanitise("x" * 100)) == 32


def test_missing_column_is_one_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(CsvReplayError, match=r"key column 'customer' not found in cards\.csv"):
        replay(write(tmp_path), key_col="customer")


def test_unparsable_time_names_line_value_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "when,user\n5,a\nyesterday,b\n")
    with pytest.raises(CsvReplayError, match=r"line 3 .*'yesterday' in column 'when'"):
        replay(path, label_col=None)


def test_bad_silo_and_label_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CsvReplayError, match="silo"):
        replay(write(tmp_path, "when,user,s\n1,a,-1\n"), label_col=None, silo_col="s")
    with pytest.raises(CsvReplayError, match="label"):
        replay(write(tmp_path, "when,user,Class\n1,a,maybe\n"))
