"""The fraud pipeline written with the API gives exactly the reference's rows."""

from __future__ import annotations

import numpy as np
import orjson

from app.features.reference import Event, run_reference_phases
from app.features.spec import FeatureSpec
from app.pipeline import pipeline_spec
from app.pipeline.runner import Record, run_pipeline
from app.pipelines.fraud import fraud_pipeline, pipeline
from app.produce import SyntheticBank, invalid_events
from topics import CUSTOMERS, TRANSACTIONS

SILOS = (0, 1, 2)
TOPIC = {"customer": CUSTOMERS, "transaction": TRANSACTIONS}


def _events(n: int = 6_000) -> list[Event]:
    bank = SyntheticBank(customers=150, silos=3, seed=21)
    events = [(k, key.encode(), orjson.dumps(v)) for k, key, v in bank.events(n_events=n)]
    bad = [(k, key.encode(), raw) for k, key, raw, _hint in invalid_events(seed=3)]
    txns = [e for e in events if e[0] == "transaction"]
    again = [txns[10], txns[-10]]  # one long pruned ("late event"), one a plain repeat
    return events[:3000] + bad + events[3000:] + again


def _records(events: list[Event]) -> list[Record]:
    return [(TOPIC[kind], key, raw) for kind, key, raw in events]


def test_spec_is_the_feature_spec_of_today() -> None:
    # Execute
    spec = pipeline_spec(pipeline)
    with_attrs = pipeline_spec(fraud_pipeline(txn_attrs=("x",), profile_attrs=("p", "q")))

    # Assert
    assert spec.columns == FeatureSpec().columns
    assert spec.version == FeatureSpec().version
    want = FeatureSpec(txn_attrs=("x",), profile_attrs=("p", "q"))
    assert (with_attrs.columns, with_attrs.version) == (want.columns, want.version)


def test_fraud_pipeline_rows_equal_the_reference() -> None:
    # Prepare: profiles at the start and profile updates mid-stream, invalid records
    events = _events()
    spec = FeatureSpec()
    phases = [events[:2000], events[2000:]]

    # Execute
    ref = run_reference_phases(phases, spec, SILOS)
    got = run_pipeline(pipeline, [_records(p) for p in phases], batch_rows=256)

    # Assert
    assert got.columns == list(spec.columns)
    assert sum(len(r) for r in got.rows.values()) > 4_000
    for silo in SILOS:
        want_rows = ref.rows[silo]
        assert [i for i, _, _ in got.rows[silo]] == [i for i, _, _ in want_rows]
        x = np.stack([r for _, r, _ in got.rows[silo]])
        want_x = np.stack([r for _, r, _ in want_rows])
        bad = np.argwhere(x != want_x)
        assert bad.size == 0, [(spec.columns[j], x[i, j], want_x[i, j]) for i, j in bad[:5]]
        assert [y for _, _, y in got.rows[silo]] == [y for _, _, y in want_rows]
    assert sorted(got.dead_letters) == sorted(ref.dead_letters)
    reasons = " ".join(reason for _, reason in got.dead_letters)
    assert "late event" in reasons and "repeated txn_id" in reasons


def test_attribute_columns_follow_the_base_columns() -> None:
    # Prepare
    p = fraud_pipeline(txn_attrs=("score",), profile_attrs=("risk",))
    spec = FeatureSpec(txn_attrs=("score",), profile_attrs=("risk",))
    customer = {"customer_id": "a", "silo": 1, "ts": 0.0, "attrs": {"risk": 0.25}}
    txn = {"txn_id": "t", "customer_id": "a", "ts": 100.0, "amount": 5.0, "label": 1,
           "attrs": {"score": 7.5}}  # fmt: skip
    events: list[Event] = [("customer", b"a", orjson.dumps(customer)),
                           ("transaction", b"a", orjson.dumps(txn))]  # fmt: skip

    # Execute
    got = run_pipeline(p, [_records(events)])
    ref = run_reference_phases([events], spec, SILOS)

    # Assert
    (row,) = [r for _, r, _ in got.rows[1]]
    np.testing.assert_array_equal(row, ref.rows[1][0][1])
    assert row[-2:].tolist() == [7.5, 0.25]
