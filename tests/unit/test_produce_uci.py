"""UCI credit card replay: 30,000 customers, six statements each, label on the last only."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

import app.produce.uci as uci_module
from app.produce.csv_replay import stable_silo
from app.produce.uci import (
    UCI_PROFILE_ATTRS,
    UCI_TXN_ATTRS,
    UciReplay,
    expected_rows,
    find_uci_csv,
    uci_csv_path,
)
from tests.shared_data import find_shared_uci_csv, shared_dirs
from topics.catalogue import SCHEMA_DIR

VALIDATORS = {
    kind: Draft202012Validator(json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text()))
    for kind in ("customer", "transaction")
}


@pytest.fixture(scope="module")
def path() -> Path:
    found = find_shared_uci_csv()
    assert found is not None, f"shared/data/UCI_Credit_Card.csv is missing from {shared_dirs()}"
    return found


@pytest.fixture(scope="module")
def events(path: Path) -> list[Any]:
    return list(UciReplay(path, n_silos=3).events())


def test_paths(tmp_path: Path) -> None:
    assert uci_csv_path("/x/shared") == Path("/x/shared/data/UCI_Credit_Card.csv")
    # falls back to the shared dir beside the repository (None where a clone has none)
    beside = uci_csv_path(Path(uci_module.__file__).resolve().parents[3] / "shared")
    assert find_uci_csv("/nonexistent") == (beside if beside.is_file() else None)
    (tmp_path / "data").mkdir()
    uci_csv_path(tmp_path).write_text("ID\n")
    assert find_uci_csv("/nonexistent", tmp_path) == uci_csv_path(tmp_path)


def test_thirty_thousand_customers_then_six_statements_each(events: list[Any]) -> None:
    # Execute
    kinds = [kind for kind, _, _ in events]
    per_customer = Counter(key for kind, key, _ in events if kind == "transaction")
    # Assert
    assert kinds[:30_000] == ["customer"] * 30_000
    assert kinds[30_000:] == ["transaction"] * 180_000
    assert len(per_customer) == 30_000
    assert set(per_customer.values()) == {6}
    times = [v["ts"] for _, _, v in events]
    assert times == sorted(times)


def test_statements_run_april_to_september_with_label_only_on_the_last(
    events: list[Any],
) -> None:
    # Prepare
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, key, value in events:
        if kind == "transaction":
            history[key].append(value)
    # Assert
    for statements in list(history.values())[:500]:
        months = [datetime.fromtimestamp(v["ts"], UTC).month for v in statements]
        assert months == [4, 5, 6, 7, 8, 9]
        assert [v["label"] for v in statements[:5]] == [None] * 5
        assert statements[5]["label"] in (0, 1)
    labels = Counter(s[-1]["label"] for s in history.values())
    assert labels[1] == 6636  # the published 22% positives


def test_values_satisfy_the_schemas_and_carry_the_documented_attrs(events: list[Any]) -> None:
    for kind, key, value in events[::97]:
        assert list(VALIDATORS[kind].iter_errors(orjson.loads(orjson.dumps(value)))) == []
        assert value["customer_id"] == key
        assert value["silo"] == stable_silo(key, 3)
        attrs = UCI_PROFILE_ATTRS if kind == "customer" else UCI_TXN_ATTRS
        assert tuple(value["attrs"]) == attrs
        if kind == "transaction":
            assert value["channel"] == "transfer"
            assert value["country"] == "TW"
            assert value["merchant_category"] == "statement"
            assert value["amount"] == max(value["attrs"]["bill_amt"], 0.0)


def test_first_row_matches_the_csv(path: Path, events: list[Any]) -> None:
    # Prepare
    with path.open() as handle:
        row = next(csv.DictReader(handle))
    # Execute
    customer = events[0][2]
    september = next(v for k, _, v in events if k == "transaction" and v["txn_id"].endswith("09"))
    # Assert
    assert customer["customer_id"] == f"uci-{row['ID']}"
    assert customer["age"] == int(row["AGE"])
    assert customer["credit_limit"] == float(row["LIMIT_BAL"])
    assert september["attrs"]["pay_status"] == float(row["PAY_0"])
    assert september["attrs"]["bill_amt"] == float(row["BILL_AMT1"])
    assert september["label"] == int(row["default-payment-next-month"])


def test_expected_rows_agree_with_the_replayed_join(path: Path, events: list[Any]) -> None:
    # Prepare: a naive offline join of the replay
    profiles = {key: v for kind, key, v in events if kind == "customer"}
    # Execute
    expected = expected_rows(path)
    # Assert
    assert len(expected) == 180_000
    for kind, key, txn in events[30_000::53]:
        assert kind == "transaction"
        profile = profiles[key]
        joined = {
            "customer_id": key, "silo": txn["silo"], "ts": txn["ts"], "amount": txn["amount"],
            "label": txn["label"], "age": profile["age"], "credit_limit": profile["credit_limit"],
            **profile["attrs"], **txn["attrs"],
        }  # fmt: skip
        assert expected[txn["txn_id"]] == joined


def test_limit_and_custom_silo_function(path: Path) -> None:
    events = list(UciReplay(path, limit=10, silo_fn=lambda cid: 7).events())
    assert len(events) == 70
    assert {v["silo"] for _, _, v in events} == {7}
    assert len(expected_rows(path, limit=10)) == 60
