"""Strategy selection and Flower's aggregation of our replies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
)

from app.fl.config import FLConfig, FLConfigError
from app.fl.messages import (
    ARRAYS,
    CONFIG,
    arrays_from_record,
    arrays_to_record,
    build_reply,
    build_server_config,
)
from app.fl.rounds import SiloRoundResult
from app.fl.strategy import build_strategy, with_ttl
from app.model.config import ModelConfig
from app.model.metrics import ScoreHistogram
from app.model.params import init_arrays, param_names
from app.model.standardize import MomentStats

CFG = ModelConfig(n_features=3, hidden=(2,))
NAMES = param_names(CFG)


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


@pytest.mark.parametrize(
    ("name", "cls"), [("fedavg", FedAvg), ("fedprox", FedProx), ("fedadam", FedAdam)]
)
def test_strategy_from_run_config(name: str, cls: type) -> None:
    strategy = build_strategy(FLConfig(strategy=name, min_nodes=3))
    assert type(strategy) is cls
    assert strategy.min_train_nodes == 3 and strategy.fraction_evaluate == 0.0  # type: ignore[attr-defined]


def test_fedprox_mu_and_dp_wrapper() -> None:
    prox = build_strategy(FLConfig(strategy="fedprox", proximal_mu=0.3))
    assert prox.proximal_mu == 0.3  # type: ignore[attr-defined]
    dp = build_strategy(FLConfig(dp_clip=2.0, dp_noise=0.5, min_nodes=2))
    assert isinstance(dp, DifferentialPrivacyServerSideFixedClipping)
    assert (dp.clipping_norm, dp.noise_multiplier, dp.num_sampled_clients) == (2.0, 0.5, 2)


def test_unknown_strategy_fails_fast() -> None:
    with pytest.raises(FLConfigError, match="unknown strategy 'sgd'; choose one of"):
        FLConfig.from_run_config({"strategy": "sgd"})


def _reply(value: float, n: int) -> Message:
    arrays = [np.full_like(a, value) for a in init_arrays(CFG)]
    msg = Message(
        RecordDict(
            {
                ARRAYS: arrays_to_record(init_arrays(CFG), NAMES),
                CONFIG: build_server_config(spec_version="v", n_features=3, mean=None, std=None),
            }
        ),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )
    result = SiloRoundResult(arrays, n, n, ScoreHistogram(10), MomentStats.empty(3), 0.1, 0.0, 0.0)
    return build_reply(
        msg,
        silo=0,
        topic="t",
        arrays_record=msg.content[ARRAYS],
        result=result,
        n_features=3,
        n_bins=10,
    )


def test_fedavg_weights_replies_by_examples() -> None:
    # Prepare: two silos, 1 and 3 labelled rows, parameters all 1.0 and all 5.0
    strategy = build_strategy(FLConfig())

    # Execute
    arrays, _ = strategy.aggregate_train(1, [_reply(1.0, 1), _reply(5.0, 3)])

    # Assert
    assert arrays is not None
    for a in arrays_from_record(arrays, NAMES):
        assert np.allclose(a, 4.0)


def test_messages_get_a_ttl() -> None:
    msg = Message(RecordDict(), dst_node_id=9, message_type=MessageType.TRAIN)
    (copy,) = with_ttl([msg], 30.0)
    assert copy.metadata.ttl == 30.0 and copy.metadata.dst_node_id == 9
