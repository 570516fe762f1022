"""Versioned profiles: as-of lookup, bounds, codec, and order independence of the join."""

from __future__ import annotations

import random

import orjson
import pytest

from app.features.profiles import HistoryBounds, ProfileHistory, decode_history, encode_history
from app.features.records import Customer, Transaction
from app.features.reference import Event, run_reference, run_reference_phases
from app.features.spec import FeatureSpec

SILOS = (0, 1, 2)
WIDE = HistoryBounds(max_versions=100, max_age_s=1e9)


def _profile(ts: float, limit: float = 1000.0, cid: str = "a", silo: int = 1) -> Customer:
    return Customer(cid, silo, ts, credit_limit=limit, attrs={"score": ts / 10})


def test_as_of_takes_the_latest_version_at_or_before_the_time() -> None:
    # Prepare
    history = ProfileHistory()
    for ts, limit in [(100.0, 1.0), (300.0, 3.0), (200.0, 2.0)]:  # one out of order
        history.add(_profile(ts, limit), WIDE)

    # Execute / Assert
    assert history.as_of(99.9) is None
    assert [history.as_of(t).credit_limit for t in (100.0, 199.0, 200.0, 250.0, 300.0, 1e9)] == [  # type: ignore[union-attr]
        1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
    ]  # fmt: skip
    assert history.latest() == _profile(300.0, 3.0)


def test_equal_times_the_version_added_last_wins() -> None:
    # Prepare
    history = ProfileHistory()
    history.add(_profile(100.0, 1.0), WIDE)
    history.add(_profile(100.0, 2.0), WIDE)

    # Execute / Assert
    assert history.as_of(100.0).credit_limit == 2.0  # type: ignore[union-attr]


def test_bounds_keep_at_most_n_versions_and_drop_superseded_old_ones() -> None:
    # Prepare
    by_count = ProfileHistory()
    by_age = ProfileHistory()

    # Execute
    for i in range(10):
        by_count.add(_profile(100.0 * i, float(i)), HistoryBounds(max_versions=3, max_age_s=1e9))
        by_age.add(_profile(100.0 * i, float(i)), HistoryBounds(max_versions=99, max_age_s=250))

    # Assert: count keeps the 3 newest; age keeps what a lookup within 250 s of 900 needs
    assert [v.ts for v in by_count.versions] == [700.0, 800.0, 900.0]
    assert [v.ts for v in by_age.versions] == [600.0, 700.0, 800.0, 900.0]
    assert by_age.as_of(650.0 + 0.0).credit_limit == 6.0  # type: ignore[union-attr]
    assert by_count.as_of(650.0) is None  # older than every kept version


def test_bounds_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_versions"):
        HistoryBounds(max_versions=0)
    with pytest.raises(ValueError, match="max_age_s"):
        HistoryBounds(max_age_s=0)


def test_history_codec_round_trips_and_reads_the_old_single_profile_format() -> None:
    # Prepare
    history = ProfileHistory()
    for ts in (5.0, 1.0, 3.0):
        history.add(_profile(ts), WIDE)
    old = orjson.dumps(_profile(7.0).to_dict())

    # Execute
    back = decode_history(encode_history(history))

    # Assert
    assert back == history
    assert decode_history(old).versions == [_profile(7.0)]
    assert decode_history(None).versions == []
    with pytest.raises(ValueError, match="corrupt profile history"):
        decode_history(b"[7, []]")


def _events(seed: int) -> tuple[list[Event], list[Event]]:
    """Profiles of 5 customers changing over time, and transactions between the changes."""
    rng = random.Random(seed)
    profiles: list[Event] = []
    txns: list[Event] = []
    for c in range(5):
        cid = f"c{c}"
        for v in range(4):
            p = Customer(cid, c % 3, 1000.0 * v + rng.random() * 900, credit_limit=100.0 * (v + 1),
                         age=20 + v)  # fmt: skip
            profiles.append(("customer", cid.encode(), orjson.dumps(p.to_dict())))
    ts = 0.0
    for i in range(200):
        ts += rng.random() * 25
        cid = f"c{rng.randrange(5)}"
        t = Transaction(f"t{i}", cid, ts, 10.0 + i, label=i % 2)
        txns.append(("transaction", cid.encode(), orjson.dumps(t.to_dict())))
    return profiles, txns


def test_rows_do_not_depend_on_how_profiles_and_transactions_interleave() -> None:
    # Prepare: the event-time order, and profiles shuffled into the transactions at random
    spec = FeatureSpec()
    profiles, txns = _events(seed=4)
    by_time = sorted(profiles + txns, key=lambda e: float(orjson.loads(e[2])["ts"]))
    shuffled = profiles[:]
    random.Random(9).shuffle(shuffled)

    # Execute
    ordered = run_reference(by_time, spec, SILOS)
    mixed = run_reference(txns + shuffled, spec, SILOS)
    profiles_first = run_reference_phases([shuffled, txns], spec, SILOS)

    # Assert: identical rows, and the join really saw several versions per customer
    assert ordered.rows.keys() == mixed.rows.keys()
    for silo in SILOS:
        a = [(i, r.tobytes(), y) for i, r, y in ordered.rows[silo]]
        assert a == [(i, r.tobytes(), y) for i, r, y in mixed.rows[silo]]
        assert a == [(i, r.tobytes(), y) for i, r, y in profiles_first.rows[silo]]
    col = spec.columns.index("credit_limit_log1p")
    limits = {round(float(r[col]), 4) for rows in ordered.rows.values() for _, r, _ in rows}
    assert len(limits) >= 4


def test_a_profile_of_a_later_phase_is_late_for_earlier_transactions() -> None:
    # Prepare
    spec = FeatureSpec()
    profile = ("customer", b"a", orjson.dumps(_profile(0.0).to_dict()))
    txn = ("transaction", b"a", orjson.dumps(Transaction("t", "a", 10.0, 1.0).to_dict()))
    col = spec.columns.index("profile_missing")

    # Execute
    late = run_reference_phases([[txn], [profile]], spec, SILOS)
    on_time = run_reference_phases([[txn, profile]], spec, SILOS)

    # Assert
    (late_row,) = [r for rows in late.rows.values() for _, r, _ in rows]
    assert late_row[col] == 1.0
    assert on_time.rows[1][0][1][col] == 0.0
