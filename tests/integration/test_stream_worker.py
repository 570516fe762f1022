"""The Faust worker on a real broker produces exactly the reference pipeline's rows."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import numpy as np

from app.features.frames import decode_batch
from app.features.reference import Event
from app.features.routing import hash_silo
from app.produce import SyntheticBank, invalid_events
from app.stream.harness import read_topic
from tests.integration.stream_support import (
    SILOS,
    collect_output,
    dead_letter_pairs,
    default_spec,
    encode,
    new_namespace,
    reference_rows,
    run_worker_over,
)
from topics import namespaced, silo_batches


def synthetic_phases(customers: int = 200, n_events: int = 20_000) -> list[list[Event]]:
    """All customer events (valid and invalid) first, then all transactions."""
    bank = SyntheticBank(customers=customers, silos=len(SILOS), seed=11)
    events = [encode(kind, key, value) for kind, key, value in bank.events(n_events=n_events)]
    bad = [encode(kind, key, raw) for kind, key, raw, _hint in invalid_events(seed=3)]
    customer_phase = [e for e in events if e[0] == "customer"] + [
        e for e in bad if e[0] == "customer"
    ]
    txns = [e for e in events if e[0] == "transaction"]
    bad_txns = [e for e in bad if e[0] == "transaction"]
    step = len(txns) // (len(bad_txns) + 1)
    for i, e in enumerate(bad_txns):  # spread the invalid ones through the stream
        txns.insert((i + 1) * step + i, e)
    return [customer_phase, txns]


def test_worker_output_equals_reference(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Prepare
    spec = default_spec()
    ns = new_namespace(kafka_bootstrap, "ref")
    phases = synthetic_phases()
    want, ref = reference_rows(phases, spec)

    # Execute
    worker = run_worker_over(kafka_bootstrap, ns, phases, tmp_path)
    code = worker.stop(signal.SIGTERM)
    got = collect_output(kafka_bootstrap, ns)

    # Assert
    assert code == 0, worker.log_tail()
    assert got.spec_versions == {spec.version}
    assert got.bad_silo_frames == 0
    n_valid = sum(len(rows) for rows in ref.rows.values())
    assert n_valid > 15_000
    assert got.total_rows() == n_valid, "every valid event exactly once"
    for silo in SILOS:
        assert got.rows[silo] == want[silo], f"silo {silo}: rows differ from the reference"
        assert max(got.rows[silo].values()) == 1, f"silo {silo}: duplicate rows"
    assert dead_letter_pairs(got) == Counter(ref.dead_letters)
    assert len(got.dead_letters) == len(invalid_events(seed=3))
    assert all(d["reason"] for d in got.dead_letters)


def test_transactions_before_their_profile_use_the_default_profile(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare: two transactions of a customer whose profile comes later, then one after it
    spec = default_spec()
    ns = new_namespace(kafka_bootstrap, "ghost")
    cid = "ghost-0001"

    def txn(i: int, ts: float) -> Event:
        return encode(
            "transaction",
            cid,
            {"txn_id": f"g{i}", "customer_id": cid, "ts": ts, "amount": 42.5,
             "merchant_category": "grocery", "channel": "pos", "country": "DE", "label": 0},
        )  # fmt: skip

    home = (hash_silo(cid, SILOS) + 1) % len(SILOS)  # not the hash silo: routing is visible
    profile = encode(
        "customer",
        cid,
        {"customer_id": cid, "silo": home, "ts": 1_700_000_000.0, "age": 70,
         "income_band": 4, "credit_limit": 20000.0, "home_country": "FR"},
    )  # fmt: skip
    phases = [[txn(0, 1_700_000_100.0), txn(1, 1_700_000_200.0)], [profile],
              [txn(2, 1_700_000_300.0)]]  # fmt: skip
    want, _ref = reference_rows(phases, spec)
    col = {name: i for i, name in enumerate(spec.columns)}

    # Execute
    worker = run_worker_over(kafka_bootstrap, ns, phases, tmp_path)
    worker.stop(signal.SIGTERM)
    got = collect_output(kafka_bootstrap, ns)

    # Assert: before the profile, default profile + flag + hash routing; after it, the profile
    assert got.rows == want
    early = [decode_batch(r.value) for r in read_topic(kafka_bootstrap,
             namespaced(silo_batches(hash_silo(cid, SILOS)), ns))]  # fmt: skip
    x = np.concatenate([f.X for f in early])
    assert x.shape[0] == 2
    assert np.all(x[:, col["profile_missing"]] == 1.0)
    assert np.allclose(x[:, col["age_100"]], 0.40)  # default age 40
    assert np.allclose(x[:, col["income_band_4"]], 0.5)  # default band 2
    assert np.all(x[:, col["is_foreign"]] == 0.0)  # home country unknown
    late = [decode_batch(r.value) for r in read_topic(kafka_bootstrap,
            namespaced(silo_batches(home), ns))]  # fmt: skip
    (row,) = np.concatenate([f.X for f in late])
    assert row[col["profile_missing"]] == 0.0
    assert np.isclose(row[col["age_100"]], 0.70)
    assert row[col["is_foreign"]] == 1.0  # DE transaction, FR home
    assert row[col["first_txn"]] == 0.0  # the window state kept the two early ones
