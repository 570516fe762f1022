"""The privacy ledger over Flower's RDP accountant (pure arithmetic, no Flower processes)."""

from __future__ import annotations

import math

from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)

from app.fl.privacy import PrivacyLedger


def test_epsilon_grows_per_round_as_flowers_accountant_computes_it() -> None:
    # Prepare: the ledger and Flower's accountant fed by hand with the same releases
    ledger = PrivacyLedger(noise_multiplier=1.1, clip=1.0, delta=1e-5, population=3)
    config = PrivacyConfig(1e-5, 3, NeighboringRelation.ADD_OR_REMOVE_ONE,
                           SamplingMethod.NO_AMPLIFICATION)  # fmt: skip
    reference = RdpAccountant(config)

    # Execute
    docs = [ledger.record_round() for _ in range(4)]
    for _ in range(4):
        reference.compose(GaussianPrivacyEvent(1.1, 3, 3))

    # Assert
    epsilons = [d["epsilon"] for d in docs]
    assert epsilons == sorted(epsilons) and len(set(epsilons)) == 4
    assert math.isclose(epsilons[-1], reference.get_epsilon(1e-5))
    assert docs[-1]["releases"] == 4 and docs[-1]["delta"] == 1e-5
    assert "silo-level" in docs[-1]["guarantee"]


def test_resumed_ledger_counts_the_earlier_releases() -> None:
    first = PrivacyLedger(1.0, 1.0, 1e-5, 2)
    for _ in range(3):
        first.record_round()
    resumed = PrivacyLedger(1.0, 1.0, 1e-5, 2)
    resumed.restore(first.summary()["compositions"])
    assert resumed.releases == 3 and math.isclose(resumed.epsilon, first.epsilon)


def test_restore_keeps_releases_made_with_another_noise_multiplier() -> None:
    low_noise = PrivacyLedger(0.5, 1.0, 1e-5, 2)
    low_noise.record_round()
    later = PrivacyLedger(2.0, 1.0, 1e-5, 2)
    later.restore(low_noise.summary()["compositions"])
    fresh = PrivacyLedger(2.0, 1.0, 1e-5, 2)
    fresh.record_round()
    assert later.releases == 1 and later.epsilon > fresh.epsilon  # the 0.5 release counts


def test_next_round_is_refused_before_max_epsilon_is_exceeded() -> None:
    ledger = PrivacyLedger(1.0, 1.0, 1e-5, 3, max_epsilon=8.0)
    rounds = 0
    while not ledger.next_would_exceed():
        ledger.record_round()
        rounds += 1
        assert rounds < 100
    assert rounds >= 1 and ledger.epsilon <= 8.0
    beyond = PrivacyLedger(1.0, 1.0, 1e-5, 3)
    for _ in range(rounds + 1):
        beyond.record_round()
    assert beyond.epsilon > 8.0
    assert not PrivacyLedger(1.0, 1.0, 1e-5, 3).next_would_exceed()  # no limit set


def test_under_dp_silos_weigh_the_same_and_noise_fits_the_aggregated_count() -> None:
    # Prepare: the DP wrapper built for 5 silos; 2 reply, with 1 and 3 labelled rows
    import numpy as np

    from app.fl.config import FLConfig
    from app.fl.messages import arrays_from_record, arrays_to_record, build_server_config
    from app.fl.privacy import calibrate_for_dp
    from app.fl.simulate import _Nodes, _task_identity
    from app.fl.strategy import build_strategy
    from app.model.params import init_arrays
    from tests.unit.test_fl_strategy import CFG, NAMES, _reply

    _task_identity()
    strategy = build_strategy(FLConfig(dp_clip=100.0, dp_noise=1e-9, min_nodes=5))
    config = build_server_config(spec_version="v", n_features=3, mean=None, std=None)
    list(strategy.configure_train(1, arrays_to_record(init_arrays(CFG), NAMES), config,
                                  _Nodes([1, 2, 3, 4, 5])))  # type: ignore[arg-type]  # fmt: skip
    replies = [_reply(1.0, 1), _reply(5.0, 3)]

    # Execute
    calibrate_for_dp(strategy, replies)
    arrays, _ = strategy.aggregate_train(1, replies)

    # Assert: the plain mean (3.0), not the row-weighted one (4.0); noise for k = 2
    assert strategy.num_sampled_clients == 2  # type: ignore[attr-defined]
    assert arrays is not None
    for a in arrays_from_record(arrays, NAMES):
        assert np.allclose(a, 3.0, atol=1e-6)
