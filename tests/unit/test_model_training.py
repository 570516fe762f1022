"""Local training and prediction."""

import numpy as np
import pytest

from app.model.config import ModelConfig
from app.model.metrics import ScoreHistogram
from app.model.params import init_arrays
from app.model.standardize import MomentStats
from app.model.training import predict, train


def _logistic_problem(
    n: int, n_features: int, seed: int, raw: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, n_features))
    w = np.linspace(2.0, -2.0, n_features)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(z @ w)))).astype(np.float32)
    if raw:  # unstandardised scale, as it arrives from the stream
        return (z * 5.0 + 100.0).astype(np.float32), y
    return z.astype(np.float32), y


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True)))


def test_training_learns_a_logistic_problem() -> None:
    # Prepare
    config = ModelConfig(n_features=8, hidden=(16, 8), learning_rate=1e-2, batch_size=128, epochs=4)
    x, y = _logistic_problem(3000, 8, seed=0, raw=True)
    x_test, y_test = _logistic_problem(2000, 8, seed=1, raw=True)
    mean, std = MomentStats.from_rows(x).mean_std()
    arrays = init_arrays(config)
    before = ScoreHistogram.from_scores(predict(arrays, x_test, config, mean, std), y_test)

    # Execute
    result = train(arrays, x, y, config, mean=mean, std=std)
    after = ScoreHistogram.from_scores(predict(result.arrays, x_test, config, mean, std), y_test)

    # Assert
    assert result.n_examples == 3000
    assert np.isfinite(result.loss_mean) and result.seconds > 0
    assert after.roc_auc() > 0.85 > before.roc_auc() + 0.1
    assert after.log_loss() < before.log_loss() - 0.1
    assert all(a.dtype == np.float32 for a in result.arrays)


def test_training_is_deterministic_for_a_seed() -> None:
    # Prepare
    config = ModelConfig(n_features=4, hidden=(8,), batch_size=32, epochs=2, seed=3)
    x, y = _logistic_problem(300, 4, seed=2)
    arrays = init_arrays(config)

    # Execute
    r1 = train(arrays, x, y, config)
    r2 = train(arrays, x, y, config)

    # Assert
    for a, b in zip(r1.arrays, r2.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert r1.loss_mean == r2.loss_mean


def test_unknown_labels_are_ignored() -> None:
    # Prepare
    config = ModelConfig(n_features=4, hidden=(8,), batch_size=32, epochs=2)
    x, y = _logistic_problem(200, 4, seed=3)
    junk = np.full((50, 4), 1e3, dtype=np.float32)
    x_mixed = np.concatenate([x[:120], junk, x[120:]])
    y_mixed = np.concatenate([y[:120], -np.ones(50, dtype=np.float32), y[120:]])
    arrays = init_arrays(config)

    # Execute
    clean = train(arrays, x, y, config)
    mixed = train(arrays, x_mixed, y_mixed, config)

    # Assert
    assert mixed.n_examples == 200
    for a, b in zip(clean.arrays, mixed.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_padded_partial_batch_matches_exact_batch() -> None:
    # Prepare: 100 rows as one exact batch vs one batch of 128 padded with zero weights
    x, y = _logistic_problem(100, 4, seed=4)
    exact = ModelConfig(n_features=4, hidden=(8,), batch_size=100)
    padded = ModelConfig(n_features=4, hidden=(8,), batch_size=128)
    arrays = init_arrays(exact)

    # Execute
    r_exact = train(arrays, x, y, exact)
    r_padded = train(arrays, x, y, padded)

    # Assert
    assert r_exact.loss_mean == pytest.approx(r_padded.loss_mean, rel=1e-5)
    for a, b in zip(r_exact.arrays, r_padded.arrays, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pos_weight", [1.0, 4.0])
def test_loss_mean_is_weighted_bce_at_start(pos_weight: float) -> None:
    # Prepare: one full batch, so the reported loss is the loss at the initial params
    config = ModelConfig(n_features=4, hidden=(8,), batch_size=256, pos_weight=pos_weight)
    x, y = _logistic_problem(256, 4, seed=5)
    arrays = init_arrays(config)
    p = predict(arrays, x, config).astype(np.float64)
    expected = -np.mean(pos_weight * y * np.log(p) + (1 - y) * np.log1p(-p))

    # Execute
    result = train(arrays, x, y, config)

    # Assert
    assert result.loss_mean == pytest.approx(expected, rel=1e-4)


def test_pos_weight_changes_the_loss() -> None:
    # Prepare
    x, y = _logistic_problem(256, 4, seed=6)
    base = ModelConfig(n_features=4, hidden=(8,))
    weighted = ModelConfig(n_features=4, hidden=(8,), pos_weight=5.0)
    arrays = init_arrays(base)

    # Execute
    r_base = train(arrays, x, y, base)
    r_weighted = train(arrays, x, y, weighted)

    # Assert
    assert r_weighted.loss_mean > r_base.loss_mean * 1.5


def test_fedprox_keeps_params_near_global() -> None:
    # Prepare
    x, y = _logistic_problem(512, 4, seed=7)
    free = ModelConfig(n_features=4, hidden=(8,), learning_rate=1e-2, batch_size=32, epochs=3)
    prox = ModelConfig(
        n_features=4, hidden=(8,), learning_rate=1e-2, batch_size=32, epochs=3, proximal_mu=10.0
    )
    start = init_arrays(free)

    # Execute
    r_free = train(start, x, y, free)
    r_prox = train(start, x, y, prox, global_arrays=start)

    # Assert
    assert _distance(r_prox.arrays, start) < 0.5 * _distance(r_free.arrays, start)


def test_no_labelled_rows_returns_input_unchanged() -> None:
    # Prepare
    config = ModelConfig(n_features=3, hidden=(4,))
    arrays = init_arrays(config)

    # Execute
    result = train(arrays, np.zeros((5, 3)), -np.ones(5), config)

    # Assert
    assert result.n_examples == 0 and np.isnan(result.loss_mean)
    np.testing.assert_array_equal(result.arrays[0], arrays[0])


def test_predict_is_batch_size_independent_and_in_range() -> None:
    # Prepare
    config = ModelConfig(n_features=5, hidden=(8,))
    arrays = init_arrays(config)
    x = np.random.default_rng(8).normal(size=(37, 5)).astype(np.float32)

    # Execute
    all_rows = predict(arrays, x, config)
    one_row = predict(arrays, x[3:4], config)

    # Assert
    assert all_rows.shape == (37,) and all_rows.dtype == np.float32
    assert np.all((all_rows >= 0) & (all_rows <= 1))
    np.testing.assert_allclose(one_row[0], all_rows[3], rtol=1e-5)
    assert predict(arrays, np.zeros((0, 5)), config).shape == (0,)


def test_wrong_feature_width_raises() -> None:
    config = ModelConfig(n_features=5, hidden=(8,))
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        train(init_arrays(config), np.zeros((4, 6)), np.zeros(4), config)
