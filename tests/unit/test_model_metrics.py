"""Mergeable score histograms vs exact metrics."""

import numpy as np
import pytest

from app.model.metrics import ScoreHistogram, merge_histograms


def exact_roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0  # 1-based average rank per distinct value
    ranks = avg_rank[inverse]
    pos = labels > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def exact_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP with one threshold per distinct score, descending."""
    values = np.unique(scores)[::-1]
    n_pos = int((labels > 0).sum())
    ap, prev_recall = 0.0, 0.0
    for v in values:
        above = scores >= v
        tp = int((labels[above] > 0).sum())
        recall = tp / n_pos
        ap += (recall - prev_recall) * tp / int(above.sum())
        prev_recall = recall
    return ap


def _random_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * labels)))
    return scores, labels


def test_histogram_auc_close_to_exact_on_random_scores() -> None:
    # Prepare
    scores, labels = _random_problem(20_000, seed=0)

    # Execute
    hist = ScoreHistogram.from_scores(scores, labels, n_bins=1000)

    # Assert
    assert hist.roc_auc() == pytest.approx(exact_roc_auc(scores, labels), abs=1e-3)
    assert hist.pr_auc() == pytest.approx(exact_average_precision(scores, labels), abs=1e-3)
    assert hist.positives + hist.negatives == hist.count == 20_000


def test_histogram_auc_exact_when_scores_on_bin_centres() -> None:
    # Prepare: many ties, every score on a bin centre
    rng = np.random.default_rng(1)
    n_bins = 50
    labels = (rng.random(3000) < 0.4).astype(np.int64)
    bins = np.clip(rng.integers(0, 30, size=3000) + 15 * labels, 0, n_bins - 1)
    scores = (bins + 0.5) / n_bins

    # Execute
    hist = ScoreHistogram.from_scores(scores, labels, n_bins=n_bins)

    # Assert
    assert hist.roc_auc() == pytest.approx(exact_roc_auc(scores, labels), abs=1e-12)
    assert hist.pr_auc() == pytest.approx(exact_average_precision(scores, labels), abs=1e-12)


def test_merged_silos_give_pooled_auc_not_average() -> None:
    # Prepare: two silos with very different score distributions
    s1, l1 = _random_problem(4000, seed=2)
    s2, l2 = _random_problem(6000, seed=3)
    s2 = s2 * 0.5  # silo 2 scores everything lower
    h1 = ScoreHistogram.from_scores(s1, l1)
    h2 = ScoreHistogram.from_scores(s2, l2)
    pooled = ScoreHistogram.from_scores(np.concatenate([s1, s2]), np.concatenate([l1, l2]))

    # Execute
    merged = merge_histograms([h1, h2])

    # Assert
    np.testing.assert_array_equal(merged.pos, pooled.pos)
    np.testing.assert_array_equal(merged.neg, pooled.neg)
    assert merged.roc_auc() == pooled.roc_auc()
    assert merged.log_loss() == pytest.approx(pooled.log_loss(), rel=1e-12)
    exact = exact_roc_auc(np.concatenate([s1, s2]), np.concatenate([l1, l2]))
    assert merged.roc_auc() == pytest.approx(exact, abs=1e-3)
    assert abs(merged.roc_auc() - (h1.roc_auc() + h2.roc_auc()) / 2) > 0.01


def test_unknown_labels_ignored_and_log_loss_clipped() -> None:
    # Prepare
    scores = np.array([0.0, 1.0, 0.9, 0.2, 0.7])
    labels = np.array([0, 1, 1, 0, -1])

    # Execute
    hist = ScoreHistogram.from_scores(scores, labels)

    # Assert
    assert hist.count == 4 and hist.positives == 2 and hist.negatives == 2
    expected = -(np.log(1 - 1e-7) * 2 + np.log(0.9) + np.log(0.8)) / 4
    assert hist.log_loss() == pytest.approx(expected)
    assert hist.roc_auc() == 1.0


def test_transport_round_trips() -> None:
    # Prepare
    scores, labels = _random_problem(500, seed=4)
    hist = ScoreHistogram.from_scores(scores, labels, n_bins=100)

    # Execute
    via_arrays = ScoreHistogram.from_arrays(hist.to_arrays())
    via_dict = ScoreHistogram.from_dict(hist.to_dict())

    # Assert
    for back in (via_arrays, via_dict):
        assert back.n_bins == 100 and back.count == hist.count
        np.testing.assert_array_equal(back.pos, hist.pos)
        np.testing.assert_array_equal(back.neg, hist.neg)
        assert back.loss_sum == hist.loss_sum
    assert all(isinstance(v, int) for v in hist.to_dict()["pos"])  # type: ignore[union-attr]


def test_empty_and_one_class_are_nan_and_bins_must_match() -> None:
    # Execute
    empty = ScoreHistogram()
    only_neg = ScoreHistogram.from_scores([0.1, 0.2], [0, 0])

    # Assert
    assert np.isnan(empty.roc_auc()) and np.isnan(empty.log_loss())
    assert np.isnan(only_neg.roc_auc()) and np.isnan(only_neg.pr_auc())
    with pytest.raises(ValueError, match="bins"):
        ScoreHistogram(n_bins=10).merge(ScoreHistogram(n_bins=20))
