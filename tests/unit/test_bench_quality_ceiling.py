"""The batch ceiling of bench quality tells a linear signal from an interaction."""

from __future__ import annotations

import numpy as np

from app.fl.simulate import SiloStream
from bench.quality_ceiling import batch_ceiling, pooled_rows
from bench.quality_streams import Stream


def _stream(xor: bool, n: int = 6000, seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    signal = X[:, 0] * X[:, 1] if xor else X[:, 0] + X[:, 1]
    y = (signal + 0.3 * rng.normal(size=n) > 1.5).astype(np.float32)
    y[::50] = -1.0  # unlabelled rows are left out
    silo = np.arange(n) % 3
    order = np.arange(n)
    silos = [SiloStream(X[silo == s], y[silo == s], order[silo == s]) for s in range(3)]
    return Stream("toy", silos, 3, "toy")


def test_pooled_rows_are_the_labelled_rows_in_event_time_order() -> None:
    # Prepare
    stream = _stream(xor=False, n=300)
    # Execute
    X, y, silo = pooled_rows(stream)
    # Assert
    assert y.size == 300 - 6 and set(np.unique(y)) <= {0, 1}
    assert silo[:3].tolist() == [1, 2, 0]  # row 0 is unlabelled
    assert np.allclose(X[0], stream.silos[1].X[0])


def test_trees_beat_the_linear_model_only_on_an_interaction() -> None:
    # Prepare
    linear, interaction = _stream(xor=False), _stream(xor=True)
    # Execute
    lin, xor = batch_ceiling(linear), batch_ceiling(interaction)
    # Assert: quarter 1 has nothing before it; then one figure per quarter and learner
    for out in (lin, xor):
        assert [len(v) for v in out.values()] == [4, 4, 4]
        assert all(v[0] is None for v in out.values())
    assert min(lin["logistic"][1:]) > 0.97  # a linear signal: the linear model is enough
    assert min(lin["gbm"][1:]) < max(lin["logistic"][1:]) + 0.02
    assert max(xor["logistic"][1:]) < 0.75  # x0 * x1: no linear model ranks it
    assert min(xor["gbm"][1:]) > 0.9
