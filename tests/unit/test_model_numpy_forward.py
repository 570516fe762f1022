"""The NumPy forward pass equals the JAX model (predict and gradient x input)."""

import numpy as np
import pytest

from app.model.config import ModelConfig
from app.model.explain import explain, gradient_x_input
from app.model.numpy_forward import NumpyMLP
from app.model.params import init_arrays
from app.model.standardize import MomentStats
from app.model.training import predict, train


@pytest.fixture(scope="module")
def trained() -> tuple[list[np.ndarray], ModelConfig, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(600, 7)) * [1, 5, 20, 0.1, 3, 1, 2] + 4).astype(np.float32)
    y = (x[:, 2] + x[:, 4] > 10).astype(np.float32)
    config = ModelConfig(n_features=7, hidden=(16, 8), learning_rate=1e-2, batch_size=64, epochs=2)
    mean, std = MomentStats.from_rows(x).mean_std()
    arrays = train(init_arrays(config), x, y, config, mean=mean, std=std).arrays
    return arrays, config, x, mean, std


def test_predict_equals_jax_with_standardisation(trained) -> None:  # type: ignore[no-untyped-def]
    # Prepare
    arrays, config, x, mean, std = trained
    mlp = NumpyMLP(arrays, mean, std)

    # Execute
    ours = mlp.predict(x)
    single = np.array([mlp.score(r) for r in x[:50]])

    # Assert
    reference = predict(arrays, x, config, mean, std)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(single, reference[:50], atol=1e-5)


def test_predict_equals_jax_without_standardisation(trained) -> None:  # type: ignore[no-untyped-def]
    arrays, config, x, _mean, _std = trained
    np.testing.assert_allclose(
        NumpyMLP(arrays).predict(x[:20]), predict(arrays, x[:20], config), atol=1e-5
    )


def test_gradient_x_input_equals_jax(trained) -> None:  # type: ignore[no-untyped-def]
    # Prepare
    arrays, config, x, mean, std = trained
    mlp = NumpyMLP(arrays, mean, std)
    columns = [f"f{i}" for i in range(7)]

    for row in x[:10]:
        # Execute
        ours = mlp.gradient_x_input(row)

        # Assert
        reference = gradient_x_input(arrays, row, config, mean, std)
        np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-4)
    assert [c for c, _ in mlp.explain(x[0], columns, 3)] == [
        c for c, _ in explain(arrays, x[0], config, mean, std, columns, 3)
    ]


def test_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError):
        NumpyMLP([np.zeros((3, 4)), np.zeros(5)])
    with pytest.raises(ValueError):
        NumpyMLP([np.zeros((3, 2)), np.zeros(2)])  # head with two outputs
    with pytest.raises(ValueError):
        NumpyMLP([np.zeros((3, 1)), np.zeros(1)], mean=np.zeros(3))


@pytest.mark.parametrize("standardise", [True, False])
def test_wide_deep_numpy_scorer_equals_jax(standardise: bool) -> None:
    # Prepare: a trained wide & deep model (linear path not zero any more)
    from app.model.scoring import scorer_for

    rng = np.random.default_rng(4)
    x = (rng.normal(size=(500, 6)) * [1, 4, 9, 0.5, 2, 1] + 3).astype(np.float32)
    y = (x[:, 1] - x[:, 2] > 0).astype(np.float32)
    config = ModelConfig(n_features=6, hidden=(8, 4), module="wide-deep", steps=40)
    mean, std = MomentStats.from_rows(x).mean_std() if standardise else (None, None)
    arrays = train(init_arrays(config), x, y, config, mean=mean, std=std).arrays
    assert np.abs(arrays[0]).max() > 0  # the linear path learnt

    # Execute
    scorer = scorer_for(config, arrays, mean, std)

    # Assert: the NumPy fast path, equal to the JAX forward and its gradient
    assert isinstance(scorer, NumpyMLP)
    np.testing.assert_allclose(scorer.predict(x), predict(arrays, x, config, mean, std),
                               atol=1e-5)  # fmt: skip
    for row in x[:5]:
        np.testing.assert_allclose(scorer.gradient_x_input(row),
                                   gradient_x_input(arrays, row, config, mean, std),
                                   atol=1e-4, rtol=1e-4)  # fmt: skip
