"""The synthetic bank: determinism, ordering, schema validity, non-IID silos, learnable fraud."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from app.produce.synthetic import SyntheticBank, invalid_events, with_invalid
from topics.catalogue import SCHEMA_DIR

VALIDATORS = {
    kind: Draft202012Validator(json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text()))
    for kind in ("customer", "transaction")
}


def schema_errors(kind: str, value: dict[str, Any]) -> list[str]:
    """Schema violations of one event value after a JSON round trip (what Kafka carries)."""
    decoded = orjson.loads(orjson.dumps(value))
    return [e.message for e in VALIDATORS[kind].iter_errors(decoded)]


def auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(score, kind="stable")) + 1
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module")
def bank() -> SyntheticBank:
    return SyntheticBank(customers=1000, silos=3, seed=7)


@pytest.fixture(scope="module")
def stream(bank: SyntheticBank) -> list[Any]:
    return list(bank.events(n_events=150_000))


def test_same_seed_same_events_other_seed_other_events() -> None:
    # Prepare / Execute
    first = list(SyntheticBank(customers=200, seed=3).events(n_events=5000))
    again = list(SyntheticBank(customers=200, seed=3).events(n_events=5000))
    other = list(SyntheticBank(customers=200, seed=4).events(n_events=5000))
    # Assert
    assert first == again
    assert first != other


def test_events_is_repeatable_on_one_object() -> None:
    bank = SyntheticBank(customers=50, seed=1)
    assert list(bank.events(n_events=2000)) == list(bank.events(n_events=2000))


def test_counts_and_stopping_rules() -> None:
    bank = SyntheticBank(customers=100, seed=2)
    assert len(list(bank.events(n_events=1234))) == 1234
    assert len(list(bank.events(n_events=10))) == 10  # only customers
    day = list(bank.events(duration_s=86_400))
    assert day[-1][2]["ts"] < bank.start_ts + 86_400
    assert sum(1 for kind, _, _ in day if kind == "transaction") > 100


def test_time_order_and_customers_before_their_first_transaction(stream: list[Any]) -> None:
    # Execute
    times = [value["ts"] for _, _, value in stream]
    known: set[str] = set()
    orphans = 0
    for kind, key, value in stream:
        assert key == value["customer_id"]
        if kind == "customer":
            known.add(key)
        elif key not in known:
            orphans += 1
    # Assert
    assert times == sorted(times)
    assert orphans == 0
    assert len(known) == 1000


def test_every_value_satisfies_its_json_schema(stream: list[Any]) -> None:
    bad = [(kind, errs) for kind, _, v in stream[:40_000] if (errs := schema_errors(kind, v))]
    assert bad == []


def test_transaction_ids_unique_and_labels_binary(stream: list[Any]) -> None:
    txns = [v for kind, _, v in stream if kind == "transaction"]
    assert len({v["txn_id"] for v in txns}) == len(txns)
    assert {v["label"] for v in txns} == {0, 1}


def test_profile_updates_happen_during_the_run(stream: list[Any]) -> None:
    # Prepare
    profiles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, key, value in stream:
        if kind == "customer":
            profiles[key].append(value)
    # Execute
    updated = {k: p for k, p in profiles.items() if len(p) > 1}
    # Assert
    assert len(updated) > 50
    changed = [p for p in updated.values() if p[-1]["credit_limit"] != p[0]["credit_limit"]]
    assert changed
    for history in updated.values():
        assert history[-1]["ts"] > history[0]["ts"]
        assert history[-1]["silo"] == history[0]["silo"]
        assert history[-1]["tenure_months"] >= history[0]["tenure_months"]


def test_fraud_rate_and_customer_mix_differ_by_silo(bank: SyntheticBank, stream: list[Any]) -> None:
    # Prepare
    silo = {bank.ids[i]: int(bank.silo[i]) for i in range(bank.customers)}
    n: Counter[int] = Counter()
    fraud: Counter[int] = Counter()
    segments: dict[int, Counter[str]] = defaultdict(Counter)
    # Execute
    for kind, key, value in stream:
        if kind == "transaction":
            n[silo[key]] += 1
            fraud[silo[key]] += value["label"]
        elif value["ts"] == bank.start_ts:
            segments[value["silo"]][value["segment"]] += 1
    rate = {s: fraud[s] / n[s] for s in n}
    # Assert
    assert rate[0] < rate[1] < rate[2]
    assert rate[2] > 3 * rate[0]
    assert segments[0].most_common(1)[0][0] == "retail"
    assert segments[1].most_common(1)[0][0] == "premium"


def test_fraud_shows_in_amount_night_foreign_and_bursts(
    bank: SyntheticBank, stream: list[Any]
) -> None:
    # Prepare
    index = {cid: i for i, cid in enumerate(bank.ids)}
    home = {bank.ids[i]: str(bank.home[i]) for i in range(bank.customers)}
    rows = []
    last: dict[str, float] = {}
    for kind, key, v in stream:
        if kind != "transaction":
            continue
        gap = v["ts"] - last.get(key, -math.inf)
        last[key] = v["ts"]
        rows.append(
            (
                v["label"],
                math.log(v["amount"] / bank.mean_amount[index[key]]),
                (v["ts"] % 86_400) < 6 * 3600,
                v["country"] != home[key],
                gap < 600,
            )
        )
    data = np.array(rows, dtype=float)
    y, features = data[:, 0], data[:, 1:]
    fraud, legit = features[y == 1].mean(axis=0), features[y == 0].mean(axis=0)
    # Assert: each pattern is visible on its own...
    assert fraud[0] - legit[0] > 1.0  # log amount ratio
    for j in (1, 2, 3):  # night, foreign, burst
        assert fraud[j] > 4 * legit[j]
    # ...and together they are learnable (a simple hand-made score already ranks well)
    score = features[:, 0] + 2 * features[:, 1] + 2 * features[:, 2] + 2 * features[:, 3]
    assert auc(score, y) > 0.85


def is_rejected(kind: str, raw: bytes, silos: int = 3) -> bool:
    if len(raw) > 64 * 1024:
        return True
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(value, dict) or list(VALIDATORS[kind].iter_errors(value)):
        return True
    return kind == "customer" and value["silo"] >= silos


def test_invalid_events_are_all_invalid_and_cover_the_failure_modes() -> None:
    # Execute
    events = invalid_events(seed=1)
    # Assert
    assert events == invalid_events(seed=1)
    assert [e[3] for e in events] == [e[3] for e in invalid_events(seed=2)]
    assert all(is_rejected(kind, raw) for kind, _, raw, _ in events)
    hints = " ".join(e[3] for e in events)
    for mode in ("malformed", "wrong type", "missing", "nan", "large", "negative", "silo 99",
                 "bool", "unknown field"):  # fmt: skip
        assert mode in hints
    assert any(len(raw) > 64 * 1024 for _, _, raw, _ in events)
    assert b"NaN" in next(raw for _, _, raw, hint in events if "nan" in hint)


def test_with_invalid_interleaves_the_requested_number() -> None:
    bank = SyntheticBank(customers=20, seed=0)
    mixed = list(with_invalid(bank.events(n_events=500), invalid_events(0), 25, every=50))
    raw = [e for e in mixed if isinstance(e[2], bytes)]
    assert len(raw) == 25
    assert len(mixed) == 525
    assert not isinstance(mixed[0][2], bytes)
