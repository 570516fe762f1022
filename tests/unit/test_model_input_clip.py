"""Clipped standardised inputs (``input-clip``) and the replay buffer's logit adjustment."""

from __future__ import annotations

import numpy as np
import pytest

from app.fl.config import DEFAULTS, FLConfig
from app.fl.rounds import prequential_round, prior_shift
from app.model.config import ModelConfig
from app.model.explain import gradient_x_input
from app.model.params import init_arrays
from app.model.replay import ReplayBuffer
from app.model.scoring import scorer_for
from app.model.standardize import MomentStats
from app.model.training import predict, prepare_rows, train


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[::50, 1] = 5_000.0  # sensor glitches: hundreds of standard deviations out
    y = (x[:, 0] + 0.5 * x[:, 2] + rng.normal(0, 0.5, n) > 1.5).astype(np.float32)
    return x, y


def test_clip_is_applied_after_standardisation_and_only_with_it() -> None:
    # Prepare
    x, _y = _rows(500)
    mean, std = MomentStats.from_rows(x).mean_std()
    clipped = ModelConfig(n_features=6, input_clip=3.0)

    # Execute
    z = prepare_rows(x, clipped, mean, std)
    raw = prepare_rows(x, clipped)

    # Assert: within [-3, 3]; rows inside are untouched; no clip without standardisation
    assert z.min() >= -3.0 and z.max() <= 3.0 and (np.abs(z) == 3.0).any()
    plain = prepare_rows(x, ModelConfig(n_features=6), mean, std)
    inside = np.abs(plain) < 3.0
    np.testing.assert_array_equal(z[inside], plain[inside])
    np.testing.assert_array_equal(raw, x)
    with pytest.raises(ValueError):
        ModelConfig(n_features=6, input_clip=-1.0)


@pytest.mark.parametrize("module", ["mlp", "wide-deep"])
def test_numpy_scorer_equals_jax_with_the_clip(module: str) -> None:
    # Prepare: a trained model whose inputs include far outliers
    x, y = _rows(800, seed=1)
    config = ModelConfig(
        n_features=6,
        hidden=(8,),
        module=module,
        learning_rate=1e-2,
        batch_size=64,
        epochs=3,
        input_clip=2.5,
    )
    mean, std = MomentStats.from_rows(x).mean_std()
    arrays = train(init_arrays(config), x, y, config, mean=mean, std=std).arrays

    # Execute
    scorer = scorer_for(config, arrays, mean, std)
    ours = scorer.predict(x)
    single = np.array([scorer.score(r) for r in x[:40]])
    grads = np.array([scorer.explain(r, list("abcdef"), 6) for r in x[:3]], dtype=object)

    # Assert: the NumPy path (no fold possible with a clip) equals the JAX forward
    reference = predict(arrays, x, config, mean, std)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(single, reference[:40], atol=1e-5)
    for row, pairs in zip(x[:3], grads, strict=True):
        want = gradient_x_input(arrays, row, config, mean, std)
        got = dict(pairs)
        np.testing.assert_allclose([got[c] for c in "abcdef"], want, atol=1e-5)
    # and the clip matters: without it an outlier row scores differently
    unclipped = predict(
        arrays,
        x[::50],
        ModelConfig(**{**config.to_dict(), "input_clip": 0.0, "hidden": (8,)}),
        mean,
        std,
    )
    assert not np.allclose(unclipped, reference[::50], atol=1e-3)


def test_defaults_clip_without_adjusting_and_both_can_be_switched() -> None:
    cfg = FLConfig.from_run_config({"n-features": 6})
    assert DEFAULTS["input-clip"] == 5.0 and cfg.model_config(6).input_clip == 5.0
    assert cfg.model_config(6).prior_shift is False
    other = FLConfig.from_run_config({"n-features": 6, "input-clip": 0, "prior-shift": "true"})
    assert other.model_config(6).input_clip == 0.0 and other.model_config(6).prior_shift is True


def test_prior_shift_is_the_log_odds_gap_between_training_mix_and_stream() -> None:
    # 50 positives in 1,000 training rows; the stream so far: 50 in 20,000
    y = np.r_[np.ones(50), np.zeros(950)]
    shift = prior_shift(y, (20_000, 50))
    expected = np.log(50.5 / 950.5) - np.log(50.5 / 19_950.5)
    assert shift == pytest.approx(expected)
    assert prior_shift(np.r_[np.ones(5), np.zeros(995)], (1_000, 5)) == pytest.approx(0.0)
    assert prior_shift(np.zeros(0), (100, 1)) == 0.0


def test_replay_counts_what_it_was_offered_and_keeps_it_across_state() -> None:
    # Prepare
    x, y = _rows(3_000, seed=2)
    buf = ReplayBuffer.empty(6, capacity=400)

    # Execute
    for part in range(3):
        buf = buf.add(x[part * 1000 : (part + 1) * 1000], y[part * 1000 : (part + 1) * 1000])
    back = ReplayBuffer.from_arrays(buf.to_arrays(), 6, 400)
    legacy = buf.to_arrays()
    legacy["meta"] = legacy["meta"][:2]  # a buffer saved before positives were counted

    # Assert
    assert buf.seen == (3_000, int(y.sum())) and back.seen == buf.seen
    assert ReplayBuffer.from_arrays(legacy, 6, 400).positives_seen == int((buf.y > 0).sum())


def test_adjusted_training_keeps_the_streams_base_rate() -> None:
    # Prepare: a rare-positive stream (about 1 %) and a buffer that kept every positive
    rng = np.random.default_rng(3)
    n = 20_000
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + rng.normal(0, 1.0, n) > 3.3).astype(np.float32)
    config = ModelConfig(
        n_features=6, hidden=(8,), learning_rate=3e-3, batch_size=128, steps=300, max_epochs=20
    )
    buf = ReplayBuffer.empty(6, capacity=1_000).add(x[:-2_000], y[:-2_000])
    new_x, new_y = x[-2_000:], y[-2_000:]
    arrays = init_arrays(config)
    mean, std = MomentStats.from_rows(x).mean_std()
    adjusted = ModelConfig(**{**config.to_dict(), "hidden": (8,), "prior_shift": True})

    # Execute
    plain = prequential_round(arrays, new_x, new_y, config, mean, std, replay=buf)
    fixed = prequential_round(arrays, new_x, new_y, adjusted, mean, std, replay=buf)

    # Assert: the buffer is positive-rich; only the adjusted model keeps the stream's rate
    rate = float(y.mean())
    assert float((buf.y > 0).mean()) > 10 * rate
    p_plain = float(predict(plain.arrays, x, config, mean, std).mean())
    p_fixed = float(predict(fixed.arrays, x, config, mean, std).mean())
    assert p_plain > 3 * rate
    assert rate / 2 < p_fixed < 2 * rate
