"""Gradient x input explanations."""

import numpy as np

from app.model.config import ModelConfig
from app.model.explain import explain
from app.model.params import init_arrays
from app.model.standardize import MomentStats
from app.model.training import train


def test_informative_feature_ranks_first() -> None:
    # Prepare: only feature "amount" (column 2) determines the label
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 5))
    y = (z[:, 2] > 0.5).astype(np.float32)
    x = (z * [1.0, 10.0, 50.0, 2.0, 0.1] + 7.0).astype(np.float32)
    columns = ["age", "balance", "amount", "n_tx_1h", "ratio"]
    config = ModelConfig(n_features=5, hidden=(16,), learning_rate=1e-2, batch_size=64, epochs=3)
    mean, std = MomentStats.from_rows(x).mean_std()
    arrays = train(init_arrays(config), x, y, config, mean=mean, std=std).arrays
    row = x[int(np.argmax(z[:, 2]))]  # a clearly positive example

    # Execute
    top = explain(arrays, row, config, mean, std, columns, top_k=3)

    # Assert
    assert len(top) == 3
    assert top[0][0] == "amount" and top[0][1] > 0
    assert abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])
