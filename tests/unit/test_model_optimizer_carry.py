"""The local Adam state carried from round to round (``carry-optimizer``)."""

from __future__ import annotations

import numpy as np
from flwr.app import RecordDict

from app.fl.client_app import load_optimizer, save_optimizer
from app.fl.config import DEFAULTS, FLConfig
from app.fl.rounds import prequential_round
from app.fl.simulate import SiloStream, plan_rounds, run_centralised
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.params import init_arrays
from app.model.training import train


def _count(opt_state: list[np.ndarray]) -> int:
    """Adam's step count: the one integer leaf of optax's adamw state."""
    ints = [leaf for leaf in opt_state if np.issubdtype(leaf.dtype, np.integer)]
    assert len(ints) == 1
    return int(ints[0].reshape(-1)[0])


def test_train_returns_its_adam_state_and_continues_from_it() -> None:
    # Prepare: 100 rows, batch 20 = 5 steps per epoch, 2 epochs
    cfg = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=20, epochs=2)
    X, y = learnable_rows(np.random.default_rng(0), 100)
    arrays = init_arrays(cfg)
    first = train(arrays, X, y, cfg)
    assert first.opt_state is not None
    # Execute: the next call from the same start, with and without the state
    carried = train(first.arrays, X, y, cfg, opt_state=first.opt_state)
    fresh = train(first.arrays, X, y, cfg)
    # Assert: the step count continues; the moments change the steps taken
    assert _count(first.opt_state) == 10
    assert carried.opt_state is not None and _count(carried.opt_state) == 20
    assert fresh.opt_state is not None and _count(fresh.opt_state) == 10
    assert any(not np.allclose(a, b) for a, b in zip(carried.arrays, fresh.arrays, strict=True))


def test_a_state_that_does_not_fit_the_model_is_ignored() -> None:
    # Prepare: the state of a wider model
    small = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=20, epochs=1)
    wide = ModelConfig(n_features=8, hidden=(32,), learning_rate=0.01, batch_size=20, epochs=1)
    X, y = learnable_rows(np.random.default_rng(1), 60)
    other = train(init_arrays(wide), X, y, wide).opt_state
    arrays = init_arrays(small)
    # Execute
    with_other = train(arrays, X, y, small, opt_state=other)
    fresh = train(arrays, X, y, small)
    # Assert: exactly a fresh optimizer
    for a, b in zip(with_other.arrays, fresh.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_round_without_labels_keeps_the_state_it_was_given() -> None:
    cfg = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=20, steps=4)
    X, y = learnable_rows(np.random.default_rng(2), 80)
    trained = prequential_round(init_arrays(cfg), X, y, cfg)
    assert trained.opt_state is not None and _count(trained.opt_state) == 4
    unlabelled = prequential_round(
        trained.arrays, X, np.full(80, -1.0, np.float32), cfg, opt_state=trained.opt_state
    )
    assert unlabelled.opt_state is trained.opt_state


def test_the_state_stays_in_the_silo_context_between_rounds() -> None:
    # Prepare
    cfg = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=20, steps=4)
    X, y = learnable_rows(np.random.default_rng(3), 80)
    result = prequential_round(init_arrays(cfg), X, y, cfg)
    state = RecordDict({})  # Flower's context.state of the run
    # Execute
    save_optimizer(state, result.opt_state)
    loaded = load_optimizer(state, FLConfig())
    off = load_optimizer(state, FLConfig.from_run_config({"carry-optimizer": "false"}))
    # Assert: the same leaves (the 0-d step count comes back 1-d), none when switched off
    assert result.opt_state is not None and loaded is not None and off is None
    assert len(loaded) == len(result.opt_state)
    for a, b in zip(loaded, result.opt_state, strict=True):
        np.testing.assert_array_equal(a.reshape(-1), np.asarray(b).reshape(-1))
        assert a.dtype == np.asarray(b).dtype
    assert load_optimizer(RecordDict({}), FLConfig()) is None  # a new run: a fresh Adam
    again = train(result.arrays, X, y, cfg, opt_state=loaded)
    assert again.opt_state is not None and _count(again.opt_state) == 8


def test_carrying_is_the_default_and_the_pooled_learner_carries_too() -> None:
    # Prepare: one silo, four rounds of 200 rows
    assert DEFAULTS["carry-optimizer"] is True and FLConfig().carry_optimizer is True
    X, y = learnable_rows(np.random.default_rng(4), 800)
    streams = [SiloStream(X, y, np.arange(800))]
    on = FLConfig.from_run_config({"n-features": 8, "hidden": "16", "local-steps": 8})
    off = FLConfig.from_run_config(
        {"n-features": 8, "hidden": "16", "local-steps": 8, "carry-optimizer": False}
    )
    plan = plan_rounds(streams, on.policy())
    assert len(plan) >= 3
    # Execute
    with_carry = run_centralised(streams, plan, on, 8)
    without = run_centralised(streams, plan, off, 8)
    # Assert: the same first round (nothing to carry yet), different scores after it
    s_on, s_off = with_carry.scores[0], without.scores[0]
    np.testing.assert_array_equal(s_on[0], s_off[0])
    np.testing.assert_array_equal(s_on[1], s_off[1])  # scored by the same round-1 model
    assert not np.allclose(s_on[2], s_off[2])
