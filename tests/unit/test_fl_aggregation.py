"""Which updates a round averages, and the first model's head at the pooled base rate.

Real replies (the ClientApp's prequential round and reply builder) aggregated by Flower's
own FedAvg through the server's ``absorb_replies``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict

from app.fl.aggregation import informative, pooled_prior_shift
from app.fl.config import FLConfig
from app.fl.messages import (
    ARRAYS,
    CONFIG,
    METRICS,
    ParsedReply,
    arrays_from_record,
    arrays_to_record,
    build_reply,
    build_server_config,
    parse_reply,
    parse_train_message,
)
from app.fl.rounds import prequential_round
from app.fl.server_app import ServerState, absorb_replies, prior_parameter
from app.fl.strategy import build_strategy
from app.model.config import ModelConfig
from app.model.params import head_bias_index, init_arrays, param_names
from app.model.standardize import MomentStats

N_FEATURES = 6
CFG = ModelConfig(n_features=N_FEATURES, hidden=(4,), epochs=1)
FROZEN = ModelConfig(n_features=N_FEATURES, hidden=(4,), epochs=0)  # replies = start arrays


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Flower stamps messages with the identity of the running task; fake one in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _rows(n: int, positives: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    y = np.zeros(n, np.float32)
    y[:positives] = 1.0
    X[:positives, 0] += 2.0  # the positives differ along feature 0
    return X, y


def _reply(
    silo: int, n: int, positives: int, config: ModelConfig = CFG, set_prior: bool = False
) -> ParsedReply:
    arrays = init_arrays(config)
    server = build_server_config(
        spec_version="v1", n_features=N_FEATURES, mean=None, std=None, set_prior=set_prior
    )
    train = Message(
        RecordDict({ARRAYS: arrays_to_record(arrays, param_names(config)), CONFIG: server}),
        dst_node_id=silo + 1,
        message_type=MessageType.TRAIN,
    )
    ins = parse_train_message(train)
    X, y = _rows(n, positives, seed=silo)
    result = prequential_round(arrays, X, y, config, set_prior=ins.set_prior)
    reply = build_reply(
        train, silo=silo, topic=f"silo.{silo}.batches", arrays_record=ins.arrays_record,
        result=result, n_features=N_FEATURES,
    )  # fmt: skip
    return parse_reply(reply)


def test_a_reply_says_whether_its_rows_held_a_positive() -> None:
    assert _reply(0, 200, 3).evaluation.trained_on_positives is True
    assert _reply(1, 200, 0).evaluation.trained_on_positives is False


def test_an_older_reply_without_the_flag_always_counts() -> None:
    with_pos, negatives = _reply(0, 200, 3), _reply(1, 200, 0)
    del negatives.message.content.metric_records[METRICS]["train-positives"]
    old = parse_reply(negatives.message)
    assert old.evaluation.trained_on_positives is None
    assert [p.evaluation.silo for p in informative([with_pos, old])] == [0, 1]


def test_negatives_only_sit_out_when_another_silo_saw_a_positive() -> None:
    replies = [_reply(0, 180, 2), _reply(1, 160, 0), _reply(2, 170, 0)]
    assert [p.evaluation.silo for p in informative(replies)] == [0]
    # nobody saw a positive: nobody has more to say, all are averaged as before
    assert [p.evaluation.silo for p in informative(replies[1:])] == [1, 2]


def _logit(rate: float) -> float:
    return math.log(rate / (1.0 - rate))


def test_pooled_prior_shift_replaces_the_average_of_the_silos_priors() -> None:
    evals = [_reply(0, 180, 2).evaluation, _reply(1, 160, 0).evaluation]
    pooled = _logit(2.5 / 341.0)
    # both averaged: weights 180 / 160 over each silo's smoothed log-odds
    both = (180 * _logit(2.5 / 181.0) + 160 * _logit(0.5 / 161.0)) / 340.0
    assert pooled_prior_shift(evals, evals) == pytest.approx(pooled - both)
    assert pooled_prior_shift(evals, evals[:1]) == pytest.approx(pooled - _logit(2.5 / 181.0))
    assert pooled_prior_shift(evals, []) == 0.0


def test_the_first_model_averages_informative_silos_with_the_pooled_prior() -> None:
    """Silos set their own prior and do not move (epochs 0): FedAvg's result is exact."""
    cfg = FLConfig(n_features=N_FEATURES, hidden=(4,))
    replies = [_reply(0, 180, 2, FROZEN, True), _reply(1, 160, 0, FROZEN, True),
               _reply(2, 170, 0, FROZEN, True)]  # fmt: skip
    state = ServerState(0, init_arrays(FROZEN), MomentStats.empty(N_FEATURES))
    head = prior_parameter(cfg, state, FROZEN)
    names = param_names(FROZEN)
    assert head == names[head_bias_index(FROZEN)]  # type: ignore[index]
    aggregated = absorb_replies(state, build_strategy(cfg), 1, replies, head)
    assert aggregated is not None
    got = arrays_from_record(aggregated, names)
    silo0 = arrays_from_record(replies[0].message.content.array_records[ARRAYS], names)
    for name, a, b in zip(names, got, silo0, strict=True):
        if name != head:  # silo 0's parameters alone: the others trained on negatives only
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert float(got[names.index(head)][0]) == pytest.approx(_logit(2.5 / 511.0), abs=1e-5)
    assert state.moments.count == 510  # every silo's rows still count for standardisation


def test_prior_parameter_only_while_nobody_trained_and_not_for_fedadam() -> None:
    state = ServerState(0, init_arrays(CFG), MomentStats.empty(N_FEATURES))
    assert prior_parameter(FLConfig(), state, CFG) is not None
    assert prior_parameter(FLConfig(strategy="fedadam"), state, CFG) is None
    assert prior_parameter(FLConfig(init_prior=0.01), state, CFG) is None
    state.round = 1
    assert prior_parameter(FLConfig(), state, CFG) is None
