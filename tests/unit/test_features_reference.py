"""The in-memory reference pipeline: joins, routing and dead letters."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from app.features.records import Customer, Transaction
from app.features.reference import Event, run_reference
from app.features.routing import hash_silo
from app.features.spec import FeatureSpec
from app.features.validation import parse_transaction
from app.features.vectorize import join_transaction
from app.features.windows import CustomerWindows

SILOS = (0, 1, 2)


def _customer(cid: str, silo: int, home_country: str = "XX") -> Event:
    profile = Customer(cid, silo, 0.0, home_country=home_country)
    return ("customer", cid.encode(), orjson.dumps(profile.to_dict()))


def _txn(txn: Transaction, key: str | None = None) -> Event:
    return ("transaction", (key or txn.customer_id).encode(), orjson.dumps(txn.to_dict()))


def test_reference_joins_routes_and_dead_letters() -> None:
    # Prepare
    spec = FeatureSpec()
    bad_json = b"{nope"
    events = [
        _txn(Transaction("t0", "early", 10.0, 5.0)),  # before its profile: hashed silo
        _customer("a", 1),
        _customer("b", 2),
        ("customer", b"zed", orjson.dumps(Customer("zed", 9, 0.0).to_dict())),  # bad silo
        _txn(Transaction("t1", "a", 100.0, 10.0, label=1)),
        _txn(Transaction("t2", "a", 200.0, 30.0, label=0)),
        _txn(Transaction("t3", "b", 300.0, 1.0)),
        _txn(Transaction("t4", "b", 400.0, 1.0, silo=0)),  # explicit silo wins
        ("transaction", b"a", bad_json),
        _txn(Transaction("t5", "a", 500.0, 1.0), key="b"),  # key mismatch
        _txn(Transaction("t6", "a", 600.0, 1.0, silo=5)),  # unknown silo
    ]

    # Execute
    out = run_reference(events, spec, SILOS)

    # Assert
    ids = {silo: [txn_id for txn_id, _, _ in rows] for silo, rows in out.rows.items()}
    expected = {0: ["t4"], 1: ["t1", "t2"], 2: ["t3"]}
    expected[hash_silo("early", SILOS)].insert(0, "t0")
    assert ids == expected
    labels = {txn_id: label for rows in out.rows.values() for txn_id, _, label in rows}
    assert (labels["t0"], labels["t1"], labels["t2"]) == (-1.0, 1.0, 0.0)
    reasons = [reason for _, reason in out.dead_letters]
    assert len(reasons) == 4
    assert reasons[0] == "unknown silo 9 (configured: 0..2)"
    assert reasons[1].startswith("malformed JSON")
    assert "does not match customer_id" in reasons[2]
    assert reasons[3].startswith("unknown silo 5")
    assert out.dead_letters[1][0] == bad_json
    rejected_state = out.states["a"]
    assert orjson.loads(rejected_state)[2] == 2  # t5/t6 left no trace in the window state


def test_reference_rows_equal_direct_joins() -> None:
    # Prepare
    spec = FeatureSpec()
    profile = Customer("a", 1, 0.0, home_country="DE")
    txns = [
        Transaction(f"t{i}", "a", 1000.0 * i, 5.0 + i, f"m{i % 3}", country="FR") for i in range(20)
    ]
    events = [_customer("a", 1, "DE"), *(_txn(t) for t in txns)]

    # Execute
    out = run_reference(events, spec, SILOS)

    # Assert
    state = CustomerWindows()
    expected = [
        join_transaction(spec, parse_transaction(e[2]), profile, state).row for e in events[1:]
    ]
    x, y = out.arrays(1, spec.n_features)
    np.testing.assert_array_equal(x, np.stack(expected))
    assert (y == -1.0).all()


def test_reference_rejects_unknown_event_kinds() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="unknown event kind"):
        run_reference([("order", None, b"{}")], FeatureSpec(), SILOS)
