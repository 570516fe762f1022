"""Pure round logic: prequential test-then-train, merged metrics, backoff."""

from __future__ import annotations

import numpy as np
import pytest

from app.fl.config import FLConfig
from app.fl.rounds import Backoff, SiloEvaluation, prequential_round, round_metrics
from app.fl.server_app import initial_state
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.metrics import ScoreHistogram, merge_histograms
from app.model.params import init_arrays
from app.model.standardize import MomentStats, merge_all
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


def test_idle_backoff_accepts_a_maximum_below_one_second() -> None:
    # any idle-backoff-max > 0 passes the run-config check, so the server must accept it
    assert [Backoff.up_to(0.5).next() for _ in range(2)] == [0.5, 0.5]
    assert Backoff.up_to(30.0).next() == 1.0
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def _rare_outlying_positives(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """1.5 % positives that are outliers (3x the spread), as frauds are in the demo."""
    y = (rng.random(rows) < 0.015).astype(np.float32)
    z = rng.normal(size=(rows, 8)) * np.where(y[:, None] > 0, 3.0, 1.0)
    return (z * 5.0 + 100.0).astype(np.float32), y


def _federated_aucs(init_prior: float, rounds: int = 3) -> list[float]:
    """Global prequential ROC AUC per round of 3 silos: the server's own start
    (``initial_state``), FedAvg by labelled rows, merged moments, default model and lr."""
    cfg = FLConfig(n_features=8, spec_version="t", resume=False, init_prior=init_prior)
    model_cfg = cfg.model_config(8)
    state = initial_state(cfg, model_cfg, "t")
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(rounds):
        mean, std = state.moments.mean_std() if state.moments.count else (None, None)
        outs = [
            prequential_round(
                state.arrays, *_rare_outlying_positives(rng, 2000), model_cfg, mean, std
            )
            for _silo in range(3)
        ]
        w = np.array([o.n_examples for o in outs], dtype=np.float64) / sum(
            o.n_examples for o in outs
        )
        state.arrays = [
            sum(wi * o.arrays[k] for wi, o in zip(w, outs, strict=True)).astype(np.float32)
            for k in range(len(state.arrays))
        ]
        state.moments = merge_all([state.moments, *(o.moments for o in outs)])
        aucs.append(merge_histograms(o.histogram for o in outs).roc_auc())
    return aucs


def test_fresh_model_on_rare_positives_does_not_rank_inverted_with_a_prior() -> None:
    # Execute: the demo's situation (rare, outlying positives; a few Adam steps per round)
    zero_bias = _federated_aucs(0.0)
    primed = _federated_aucs(0.015)

    # Assert: from a zero head bias the early rounds rank inverted (the demo's 0.12/0.09
    # dip); started at the base rate's log-odds they do not
    assert min(zero_bias[1:]) < 0.3
    assert min(primed[1:]) > 0.7
