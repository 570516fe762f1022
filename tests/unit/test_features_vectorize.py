"""Feature spec and rows: hand-computed values, missing profiles, versioning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.features.records import Customer, Transaction
from app.features.spec import BASE_COLUMNS, FeatureSpec
from app.features.vectorize import (
    DEFAULT_PROFILE,
    FIRST_TXN_GAP_S,
    build_row,
    join_transaction,
    label_of,
)
from app.features.windows import CustomerWindows, WindowConfig, snapshot

DAY = 86400.0


def _row_dict(spec: FeatureSpec, row: np.ndarray) -> dict[str, float]:
    return dict(zip(spec.columns, row.tolist(), strict=True))


def test_spec_columns_and_version() -> None:
    # Prepare
    base = FeatureSpec()
    extended = FeatureSpec(txn_attrs=("risk",), profile_attrs=("score", "age2"))

    # Execute
    columns = extended.columns

    # Assert
    assert base.columns == BASE_COLUMNS and base.n_features == len(BASE_COLUMNS)
    assert columns[-3:] == ("txn.risk", "profile.score", "profile.age2")
    assert extended.n_features == base.n_features + 3
    assert len(set(columns)) == len(columns)
    assert len(base.version) == 12 and int(base.version, 16) >= 0
    assert FeatureSpec().version == base.version
    assert extended.version != base.version
    assert FeatureSpec(txn_attrs=("other",)).version != FeatureSpec(txn_attrs=("risk",)).version
    assert FeatureSpec(windows=WindowConfig(short_s=7200)).version != base.version


def test_spec_rejects_duplicate_attribute_names() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSpec(txn_attrs=("a", "a"))
    with pytest.raises(ValueError):
        FeatureSpec(profile_attrs=("",))


def test_first_transaction_row_matches_hand_computed_values() -> None:
    # Prepare: 2023-11-14 22:13:20 UTC, profile from France, spending in Germany
    spec = FeatureSpec(txn_attrs=("risk", "absent"), profile_attrs=("score",))
    ts = 1_700_000_000.0
    txn = Transaction("t1", "c1", ts, 99.0, "grocery", "online", "DE", attrs={"risk": 0.25})
    profile = Customer(
        "c1", 1, 0.0, age=30, income_band=1, credit_limit=999.0, segment="student",
        tenure_months=24, home_country="FR", attrs={"score": 2.0},
    )  # fmt: skip

    # Execute
    result = join_transaction(spec, txn, profile, None)
    got = _row_dict(spec, result.row)

    # Assert
    hour = (ts % DAY) / 3600.0
    expected = dict.fromkeys(spec.columns, 0.0)
    expected.update(
        {
            "amount_log1p": math.log1p(99.0),
            "amount_to_limit": 99.0 / 1000.0,
            "hour_sin": math.sin(2 * math.pi * hour / 24),
            "hour_cos": math.cos(2 * math.pi * hour / 24),
            "is_night": 0.0,
            "channel_online": 1.0,
            "is_foreign": 1.0,
            "profile_missing": 0.0,
            "age_100": 0.3,
            "income_band_4": 0.25,
            "credit_limit_log1p": math.log1p(999.0),
            "tenure_years_log1p": math.log1p(2.0),
            "segment_student": 1.0,
            "seconds_since_prev_log1p": math.log1p(FIRST_TXN_GAP_S),
            "first_txn": 1.0,
            "amount_to_customer_mean": 1.0,
            "new_merchant": 1.0,
            "new_country": 1.0,
            "txn.risk": 0.25,
            "txn.absent": 0.0,
            "profile.score": 2.0,
        }
    )
    assert result.row.dtype == np.float32 and result.row.shape == (spec.n_features,)
    assert got == pytest.approx(expected, abs=1e-6)
    assert result.label == -1.0
    assert result.new_state.count == 1


def test_second_transaction_sees_the_first_in_its_windows() -> None:
    # Prepare: two transactions 10 minutes apart at 03:00 UTC
    spec = FeatureSpec()
    t0 = 10 * DAY + 3 * 3600
    first = Transaction("t1", "c1", t0, 9.0, "grocery", "pos", "DE", label=0)
    second = Transaction("t2", "c1", t0 + 600, 29.0, "grocery", "atm", "FR", label=1)
    state = CustomerWindows()

    # Execute
    join_transaction(spec, first, None, state)
    result = join_transaction(spec, second, None, state)
    got = _row_dict(spec, result.row)

    # Assert
    assert got["is_night"] == 1.0 and got["channel_atm"] == 1.0
    assert got["profile_missing"] == 1.0 and got["is_foreign"] == 0.0
    assert got["age_100"] == pytest.approx(DEFAULT_PROFILE.age / 100)
    assert got["segment_retail"] == 1.0
    for window in ("short", "long"):
        assert got[f"{window}_count_log1p"] == pytest.approx(math.log1p(1))
        assert got[f"{window}_sum_log1p"] == pytest.approx(math.log1p(9.0))
        assert got[f"{window}_mean_log1p"] == pytest.approx(math.log1p(9.0))
        assert got[f"{window}_max_log1p"] == pytest.approx(math.log1p(9.0))
        assert got[f"{window}_distinct_merchants_log1p"] == pytest.approx(math.log1p(1))
    assert got["seconds_since_prev_log1p"] == pytest.approx(math.log1p(600.0))
    assert got["first_txn"] == 0.0
    assert got["amount_to_customer_mean"] == pytest.approx(29.0 / 10.0)
    assert got["new_merchant"] == 0.0 and got["new_country"] == 1.0
    assert result.label == 1.0 and result.new_state is state and state.count == 2


def test_build_row_fills_the_given_buffer() -> None:
    # Prepare
    spec = FeatureSpec()
    txn = Transaction("t1", "c1", 5.0, 1.0)
    window = snapshot(CustomerWindows(), txn.ts, spec.windows)
    buffer = np.full((2, spec.n_features), -7.0, np.float32)

    # Execute
    row = build_row(spec, txn, None, window, out=buffer[1])

    # Assert
    assert row.base is buffer
    assert np.array_equal(buffer[1], build_row(spec, txn, None, window))
    assert (buffer[0] == -7.0).all()


def test_rows_are_finite_and_bounded_for_extreme_inputs() -> None:
    # Prepare
    spec = FeatureSpec()
    profile = Customer("c1", 0, 0.0, credit_limit=0.0, tenure_months=1200, age=120)
    txns = [Transaction(f"t{i}", "c1", 1e9 + i, amount) for i, amount in enumerate([0.0, 1e9, 0.0])]
    state = CustomerWindows()

    # Execute
    rows = [join_transaction(spec, t, profile, state).row for t in txns]

    # Assert
    for row in rows:
        assert np.isfinite(row).all()
        assert np.abs(row).max() < 25.0


def test_label_of() -> None:
    # Execute
    labels = [label_of(Transaction("t", "c", 0.0, 1.0, label=v)) for v in (1, 0, None)]

    # Assert
    assert labels == [1.0, 0.0, -1.0]
