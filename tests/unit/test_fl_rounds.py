"""Pure round logic: prequential test-then-train, merged metrics, backoff."""

from __future__ import annotations

import numpy as np
import pytest

from app.fl.rounds import Backoff, SiloEvaluation, prequential_round, round_metrics
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.metrics import ScoreHistogram
from app.model.params import init_arrays
from app.model.standardize import MomentStats
from app.model.training import predict

CFG = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=64, epochs=3)


def test_scores_with_the_received_model_before_training() -> None:
    # Prepare
    X, y = learnable_rows(np.random.default_rng(0), 800)
    arrays = init_arrays(CFG)
    mean, std = MomentStats.from_rows(X).mean_std()

    # Execute
    result = prequential_round(arrays, X, y, CFG, mean, std)

    # Assert: the histogram is that of the RECEIVED model's scores; training changed the model
    expected = ScoreHistogram.from_scores(predict(arrays, X, CFG, mean, std), y)
    assert np.array_equal(result.histogram.pos, expected.pos)
    assert np.array_equal(result.histogram.neg, expected.neg)
    assert result.histogram.loss_sum == pytest.approx(expected.loss_sum, rel=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(result.arrays, arrays, strict=True))
    assert (result.rows, result.n_examples, result.moments.count) == (800, 800, 800)


def test_prequential_auc_rises_on_learnable_data() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    arrays = init_arrays(CFG)
    aucs = []

    # Execute: five test-then-train steps on fresh rows
    for _ in range(5):
        X, y = learnable_rows(rng, 1000)
        result = prequential_round(arrays, X, y, CFG)
        arrays = result.arrays
        aucs.append(result.histogram.roc_auc())

    # Assert
    assert aucs[-1] > 0.8 > aucs[0] - 0.2
    assert aucs[-1] > aucs[0]


def test_unknown_labels_are_neither_scored_nor_trained() -> None:
    X, y = learnable_rows(np.random.default_rng(2), 300)
    y[:100] = -1.0
    result = prequential_round(init_arrays(CFG), X, y, CFG)
    assert result.histogram.count == 200
    assert result.n_examples == 200
    assert result.rows == 300 and result.moments.count == 300


def test_global_metrics_come_from_merged_histograms_not_averages() -> None:
    # Prepare: silo A separates perfectly but on a different score range than silo B
    a = ScoreHistogram.from_scores([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], n_bins=100)
    b = ScoreHistogram.from_scores([0.6, 0.7, 0.8, 0.9], [0, 0, 1, 1], n_bins=100)
    evals = [SiloEvaluation(0, 4, 4, a), SiloEvaluation(1, 4, 4, b)]

    # Execute
    doc = round_metrics(7, evals, model_version="7-abc", round_seconds=1.23456, now=1.0)

    # Assert: each silo has AUC 1, the pooled AUC is lower (0.75), exactly
    assert doc["silos"]["0"]["roc_auc"] == 1.0 and doc["silos"]["1"]["roc_auc"] == 1.0
    assert doc["global"]["roc_auc"] == pytest.approx(0.75)
    assert doc["global"]["rows"] == 8 and doc["round"] == 7 and doc["round_seconds"] == 1.235


def test_metrics_nan_becomes_none() -> None:
    empty = SiloEvaluation(0, 0, 0, ScoreHistogram(10))
    doc = round_metrics(1, [empty], model_version="1-x", round_seconds=0.0)
    assert doc["global"]["roc_auc"] is None and doc["silos"]["0"]["train_loss"] is None


def test_backoff_doubles_caps_and_resets() -> None:
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0
