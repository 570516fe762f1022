"""Federated standardisation: merged moments equal pooled moments."""

import numpy as np
import pytest

from app.model.standardize import MomentStats, merge_all, standardize


def test_merge_equals_pooled_stats() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    silos = [rng.normal(loc=i, scale=1 + i, size=(50 + 10 * i, 4)) for i in range(3)]
    pooled = np.concatenate(silos)

    # Execute
    merged = merge_all([MomentStats.from_rows(x) for x in silos])
    mean, std = merged.mean_std()

    # Assert
    assert merged.count == pooled.shape[0]
    np.testing.assert_allclose(merged.sum, pooled.sum(axis=0))
    np.testing.assert_allclose(merged.sumsq, np.square(pooled).sum(axis=0))
    np.testing.assert_allclose(mean, pooled.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, pooled.std(axis=0), rtol=1e-5)
    assert mean.dtype == np.float32 and std.dtype == np.float32


def test_constant_feature_and_empty_stats_get_unit_std() -> None:
    # Prepare
    x = np.column_stack([np.full(10, 3.0), np.arange(10.0)])

    # Execute
    _, std = MomentStats.from_rows(x).mean_std()
    empty_mean, empty_std = MomentStats.empty(2).mean_std()

    # Assert
    assert std[0] == 1.0 and std[1] > 0
    np.testing.assert_array_equal(empty_mean, [0, 0])
    np.testing.assert_array_equal(empty_std, [1, 1])


def test_transport_round_trip_and_standardize() -> None:
    # Prepare
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(200, 3))
    stats = MomentStats.from_rows(x)

    # Execute
    back = MomentStats.from_arrays(stats.to_arrays())
    z = standardize(x, *back.mean_std())

    # Assert
    assert back.count == stats.count
    np.testing.assert_array_equal(back.sum, stats.sum)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)


def test_merge_rejects_feature_mismatch() -> None:
    with pytest.raises(ValueError, match="features"):
        MomentStats.empty(2).merge(MomentStats.empty(3))
