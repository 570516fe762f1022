"""Mergeable score histograms vs exact metrics."""

import numpy as np
import pytest

from app.model.metrics import LOGIT_MAX, LOGIT_MIN, ScoreHistogram, bin_of, merge_histograms


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
    """AP with one threshold per distinct score, descending (sklearn's convention)."""
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], (labels[order] > 0).astype(np.float64)
    last = np.r_[s[1:] != s[:-1], True]  # last row of each group of equal scores
    tp = np.cumsum(pos)[last]
    predicted = np.flatnonzero(last) + 1.0
    recall_gain = np.diff(np.r_[0.0, tp]) / pos.sum()
    return float(np.sum(recall_gain * tp / predicted))


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
    # Prepare: many ties, every score on a bin centre (bins are uniform in log-odds)
    rng = np.random.default_rng(1)
    n_bins = 50
    labels = (rng.random(3000) < 0.4).astype(np.int64)
    bins = np.clip(rng.integers(0, 30, size=3000) + 15 * labels, 0, n_bins - 1)
    z = LOGIT_MIN + (bins + 0.5) * ((LOGIT_MAX - LOGIT_MIN) / n_bins)
    scores = 1.0 / (1.0 + np.exp(-z))

    # Execute
    hist = ScoreHistogram.from_scores(scores, labels, n_bins=n_bins)

    # Assert: every score landed in its own bin; rank AUC with ties counted 1/2 is exact
    np.testing.assert_array_equal(bin_of(scores, n_bins), bins)
    assert hist.roc_auc() == pytest.approx(exact_roc_auc(scores, labels), abs=1e-12)


def _calibrated_rare_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a perfectly calibrated model whose labels are drawn from its scores."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-8.0, 2.0, n)  # log-odds; ~0.2 % positives, 95 % of rows below p=0.005
    scores = 1.0 / (1.0 + np.exp(-z))
    labels = (rng.random(n) < scores).astype(np.int64)
    return scores, labels


def test_merged_rare_event_metrics_match_exact_values() -> None:
    # Prepare: three silos of a calibrated model at about 0.2 % positives
    parts = [
        _calibrated_rare_scores(n, seed) for n, seed in ((150_000, 10), (90_000, 11), (60_000, 12))
    ]
    scores = np.concatenate([s for s, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    assert 0.0015 < labels.mean() < 0.003
    assert np.mean(scores < 0.001) > 0.5  # where equal-width bins on [0, 1] lumped rows

    # Execute: silo histograms merged (the federated server's view)
    merged = merge_histograms(ScoreHistogram.from_scores(s, lab) for s, lab in parts)

    # Assert
    assert abs(merged.roc_auc() - exact_roc_auc(scores, labels)) < 0.002
    assert abs(merged.pr_auc() - exact_average_precision(scores, labels)) < 0.005
    # the old equal-width binning was measurably biased on the same scores
    lin = np.minimum((scores * 1000).astype(np.int64), 999)
    pos = np.bincount(lin[labels == 1], minlength=1000).astype(float)
    neg = np.bincount(lin[labels == 0], minlength=1000).astype(float)
    old_auc = np.sum(pos * (np.cumsum(neg) - neg + 0.5 * neg)) / (pos.sum() * neg.sum())
    assert exact_roc_auc(scores, labels) - old_auc > 0.005


def test_confident_scores_far_below_1e7_keep_their_ranks() -> None:
    # Prepare: a separable problem scored by a confident model (float32, as predict gives)
    rng = np.random.default_rng(5)
    labels = (rng.random(50_000) < 0.01).astype(np.int64)
    z = rng.normal(-25.0, 4.0, labels.size) + 12.0 * labels
    scores = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    # Execute
    hist = ScoreHistogram.from_scores(scores, labels)

    # Assert
    assert np.mean(scores < 1e-7) > 0.9
    assert abs(hist.roc_auc() - exact_roc_auc(scores, labels)) < 0.002
    assert abs(hist.pr_auc() - exact_average_precision(scores, labels)) < 0.005


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
    sparse = hist.to_sparse()
    back = ScoreHistogram.from_sparse(sparse)
    np.testing.assert_array_equal(back.pos, hist.pos)
    np.testing.assert_array_equal(back.neg, hist.neg)
    assert len(sparse["bins"]) < 100  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bin outside"):
        ScoreHistogram.from_sparse({**sparse, "bins": [100] * len(sparse["bins"])})  # type: ignore[arg-type]


def test_empty_and_one_class_are_nan_and_bins_must_match() -> None:
    # Execute
    empty = ScoreHistogram()
    only_neg = ScoreHistogram.from_scores([0.1, 0.2], [0, 0])

    # Assert
    assert np.isnan(empty.roc_auc()) and np.isnan(empty.log_loss())
    assert np.isnan(only_neg.roc_auc()) and np.isnan(only_neg.pr_auc())
    with pytest.raises(ValueError, match="bins"):
        ScoreHistogram(n_bins=10).merge(ScoreHistogram(n_bins=20))
