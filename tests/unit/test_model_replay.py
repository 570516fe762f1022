"""The silo's replay buffer: bounded, positives kept, negatives a uniform sample, round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from app.fl.rounds import prequential_round
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.params import init_arrays
from app.model.replay import ReplayBuffer


def _rows(n: int, start: int, positive_every: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, axis=1)
    y = np.zeros(n, np.float32)
    if positive_every:
        y[::positive_every] = 1.0
    return X, y


def test_buffer_is_bounded_keeps_newest_positives_and_ignores_unknown_labels() -> None:
    # Prepare
    buf = ReplayBuffer.empty(2, capacity=100, positive_share=0.2)
    # Execute: 1,000 rows, every 10th positive (100 positives > 20 slots), then unknowns
    for start in range(0, 1000, 250):
        buf = buf.add(*_rows(250, start, positive_every=10))
    buf = buf.add(np.ones((50, 2), np.float32), np.full(50, -1.0, np.float32))
    # Assert
    assert buf.rows == 100
    assert int(buf.y.sum()) == 20
    assert sorted(buf.X[buf.y > 0, 0].tolist()) == list(range(800, 1000, 10))
    assert buf.negatives_seen == 900


def test_negatives_are_a_uniform_sample_of_all_seen() -> None:
    # Prepare: 20,000 negatives in 40 rounds into 1,000 slots
    buf = ReplayBuffer.empty(2, capacity=1000)
    # Execute
    for start in range(0, 20_000, 500):
        buf = buf.add(*_rows(500, start))
    # Assert: each quarter of the history holds about a quarter of the sample
    kept = buf.X[:, 0]
    quarters = np.histogram(kept, bins=4, range=(0, 20_000))[0]
    assert buf.rows == 1000 and len(np.unique(kept)) == 1000
    assert all(200 <= q <= 300 for q in quarters), quarters


def test_round_trip_and_changed_capacity_starts_empty() -> None:
    # Prepare
    buf = ReplayBuffer.empty(2, capacity=64).add(*_rows(300, 0, positive_every=7))
    # Execute
    back = ReplayBuffer.from_arrays(buf.to_arrays(), 2, 64)
    other = ReplayBuffer.from_arrays(buf.to_arrays(), 2, 128)
    # Assert
    assert np.array_equal(back.X, buf.X) and np.array_equal(back.y, buf.y)
    assert back.negatives_seen == buf.negatives_seen
    assert other.rows == 0 and other.capacity == 128


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        ReplayBuffer.empty(3, 10).add(np.zeros((4, 2)), np.zeros(4))


def test_prequential_round_trains_on_new_rows_and_the_buffer() -> None:
    # Prepare: a buffer holding earlier rows; this round brings 40 rows
    cfg = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=32, steps=4)
    rng = np.random.default_rng(1)
    X_old, y_old = learnable_rows(rng, 600)
    X_new, y_new = learnable_rows(rng, 40)
    buf = ReplayBuffer.empty(8, capacity=500).add(X_old, y_old)
    arrays = init_arrays(cfg)
    # Execute
    with_buf = prequential_round(arrays, X_new, y_new, cfg, replay=buf)
    without = prequential_round(arrays, X_new, y_new, cfg)
    # Assert: same prequential scores, different training, weight = the new rows only
    assert np.array_equal(with_buf.histogram.pos, without.histogram.pos)
    assert any(not np.allclose(a, b) for a, b in zip(with_buf.arrays, without.arrays, strict=True))
    assert with_buf.n_examples == without.n_examples == 40
    assert with_buf.replay is not None and with_buf.replay.rows == 500
    assert without.replay is None
