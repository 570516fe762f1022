"""Silo base-rate correction (``silo-prior``) and the wide & deep default."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from app.features.records import Customer, Transaction
from app.features.spec import FeatureSpec
from app.fl.config import DEFAULTS, FLConfig
from app.fl.messages import build_server_config
from app.fl.model_store import make_model_frame
from app.fl.rounds import SiloEvaluation, prequential_round, silo_offsets
from app.fl.server_app import ServerState, frame_metrics, offsets_of
from app.fl.synthetic import learnable_rows
from app.model.config import ModelConfig
from app.model.frame import (
    SILO_OFFSETS_KEY,
    ModelFrame,
    ModelMeta,
    decode_model,
    encode_model,
    model_version_for,
    silo_offsets_of,
)
from app.model.metrics import ScoreHistogram
from app.model.params import init_arrays, param_names
from app.model.standardize import MomentStats
from app.model.training import predict
from app.pipeline import MLP, Pipeline, WideDeep
from app.stream.loop import StreamLoop
from app.stream.model_follower import load_live_model
from app.stream.processor import StreamProcessor
from topics import CHATBOT_REQUESTS, FEATURES_ENRICHED

CFG = ModelConfig(n_features=8, hidden=(16,), learning_rate=0.01, batch_size=64, epochs=2)


def test_alike_silos_get_no_correction() -> None:
    # sampling noise only (the same 0.3 % rate): the spread is explained, tau2 = 0
    offsets = silo_offsets({0: (10_000, 30), 1: (10_000, 36), 2: (10_000, 25)})
    assert offsets == {0: 0.0, 1: 0.0, 2: 0.0}
    assert silo_offsets({0: (10_000, 30)}) == {}  # one silo is the whole
    assert silo_offsets({0: (500, 0), 1: (500, 0)}) == {}  # nothing positive yet


def test_silos_with_other_base_rates_get_their_log_odds_difference() -> None:
    # Prepare: 0.12 %, 0.17 % and 0.61 % positives on many rows
    counts = {0: (80_000, 96), 1: (80_000, 136), 2: (80_000, 488)}

    # Execute
    offsets = silo_offsets(counts)

    # Assert: signs and order follow the rates; little shrinkage with this many positives
    rate = (96 + 136 + 488 + 0.5) / (240_000 + 1)
    full = np.log(488.5 / 79_512.5) - np.log(rate / (1 - rate))
    assert offsets[0] < offsets[1] < 0 < offsets[2]
    assert offsets[2] == pytest.approx(full, rel=0.05)


def test_offset_shifts_the_prequential_logits_only() -> None:
    # Prepare
    X, y = learnable_rows(np.random.default_rng(2), 600)
    arrays = init_arrays(CFG)
    mean, std = MomentStats.from_rows(X).mean_std()

    # Execute
    plain = prequential_round(arrays, X, y, CFG, mean, std)
    shifted = prequential_round(arrays, X, y, CFG, mean, std, offset=1.5)
    per_row = prequential_round(arrays, X, y, CFG, mean, std, offset=np.full(600, 1.5))

    # Assert: scores = sigmoid(logit + 1.5); training is the same with or without it
    p = predict(arrays, X, CFG, mean, std).astype(np.float64)
    expected = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + 1.5)))
    assert shifted.scores is not None and per_row.scores is not None
    np.testing.assert_allclose(shifted.scores, expected, rtol=1e-4)
    np.testing.assert_array_equal(shifted.scores, per_row.scores)
    assert all(np.array_equal(a, b) for a, b in zip(plain.arrays, shifted.arrays, strict=True))


def test_server_sends_each_silo_its_correction() -> None:
    # Prepare: whole-run counts of two silos with different rates
    cfg = FLConfig(n_features=CFG.n_features)
    state = ServerState(3, init_arrays(CFG), MomentStats.empty(8))
    rng = np.random.default_rng(0)
    for silo, rate in ((0, 0.001), (1, 0.02)):
        y = (rng.random(50_000) < rate).astype(np.float32)
        h = ScoreHistogram.from_scores(rng.random(50_000), y)
        state.whole_run.add([SiloEvaluation(silo, 50_000, 50_000, h)])

    # Execute
    offsets = offsets_of(cfg, state)
    config = build_server_config(spec_version="v", n_features=8, mean=None, std=None,
                                 offsets=offsets)  # fmt: skip

    # Assert
    assert offsets[0] < 0 < offsets[1]
    assert dict(zip(config["silo-offset-ids"], config["silo-offsets"], strict=True)) == offsets  # type: ignore[arg-type]
    assert offsets_of(FLConfig(n_features=8, silo_prior=False), state) == {}


def test_wide_deep_is_the_default_and_the_mlp_stays_available() -> None:
    cfg = FLConfig.from_run_config({"n-features": 8})
    assert DEFAULTS["module"] == "wide-deep" and cfg.model_config(8).module == "wide-deep"
    assert param_names(cfg.model_config(8))[0] == "linear.kernel"
    p = Pipeline("t", silos=2)
    rows = p.stream("t.in", key="k").map(lambda c: {"a": c.a}).label("y")
    assert p.federate(rows, model=WideDeep(hidden=(8,))).run_config()["module"] == "wide-deep"
    assert p.federate(rows, model=MLP(hidden=(8,))).run_config() == {
        "strategy": "fedavg", "module": "mlp", "hidden": "8"}  # fmt: skip
    assert "module" not in p.federate(rows).run_config()  # the run config's default


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def test_model_frame_carries_the_corrections_the_next_round_uses() -> None:
    # Prepare: whole-run counts of two silos with different rates
    cfg = FLConfig(n_features=CFG.n_features)
    state = ServerState(3, init_arrays(CFG), MomentStats.empty(8))
    rng = np.random.default_rng(1)
    for silo, rate in ((0, 0.001), (1, 0.02)):
        y = (rng.random(50_000) < rate).astype(np.float32)
        state.whole_run.add(
            [
                SiloEvaluation(
                    silo, 50_000, 50_000, ScoreHistogram.from_scores(rng.random(50_000), y)
                )
            ]
        )

    # Execute
    meta = frame_metrics(cfg, state, {"round": 3})
    frame = decode_model(
        make_model_frame(
            model_name="m",
            round_=3,
            arrays=state.arrays,
            config=CFG,
            spec_version="v",
            moments=MomentStats.empty(8),
            metrics=meta,
        )[0]
    )

    # Assert: the frame holds exactly what the server sends the silos next round
    assert silo_offsets_of(frame.meta) == pytest.approx(offsets_of(cfg, state))
    assert (
        frame_metrics(FLConfig(n_features=8, silo_prior=False), state, {})[SILO_OFFSETS_KEY] == {}
    )
    bad = ModelMeta(
        model_name="m",
        round=1,
        spec_version="v",
        model_version="1-x",
        n_features=8,
        metrics={SILO_OFFSETS_KEY: {"0": "nan", "x": 1.0, "1": True, "2": 0.5}},
    )
    assert silo_offsets_of(bad) == {2: 0.5}


def test_live_scores_apply_the_silo_correction_of_the_frame() -> None:
    # Prepare: a model frame with corrections for silos 0 and 2; customers in silos 0, 1, 2
    spec = FeatureSpec()
    config = ModelConfig(n_features=spec.n_features, module="wide-deep", input_clip=5.0)
    arrays = init_arrays(config)
    meta = ModelMeta(
        model_name="m",
        round=4,
        spec_version=spec.version,
        model_version=model_version_for(4, arrays),
        n_features=spec.n_features,
        config=config.to_dict(),
        metrics={SILO_OFFSETS_KEY: {"0": -1.25, "2": 2.0}},
    )
    frame = encode_model(
        ModelFrame(meta, arrays, np.zeros(spec.n_features), np.ones(spec.n_features))
    )
    live = load_live_model(frame, spec.version, spec.n_features)
    processor = StreamProcessor(spec, (0, 1, 2), max_rows=1000, max_ms=10_000)
    loop = StreamLoop(spec, processor, outbox=None, follower=None)
    t0 = 1_700_000_000.0
    for silo in range(3):
        processor.on_customer(
            orjson.dumps(Customer(f"c{silo}", silo, t0).to_dict()), f"c{silo}".encode(), 0
        )
    loop.install(live, 0)

    # Execute: one transaction per customer, then a risk question about c2
    for i in range(3):
        txn = Transaction(f"t{i}", f"c{i}", t0 + 60 * i, 25.0 + i, "grocery", label=0)
        joined = processor.on_transaction(
            orjson.dumps(txn.to_dict()), f"c{i}".encode(), 0, i, int((t0 + 60 * i) * 1000)
        )
        assert joined is not None
        loop.on_joined(joined, 0)
    reply = loop.on_chat_request(
        orjson.dumps({"request_id": "q", "customer_id": "c2"}), b"c2", CHATBOT_REQUESTS, 0, 0
    )

    # Assert: enriched score = the shared model's logit + its silo's correction (none: silo 1)
    enriched = [orjson.loads(v) for t, _k, v in loop.sent if t == FEATURES_ENRICHED]
    assert sorted(e["silo"] for e in enriched) == [0, 1, 2]
    for e in enriched:
        plain = live.scorer.score(loop.latest[e["customer_id"]].row)
        want = {0: -1.25, 1: 0.0, 2: 2.0}[e["silo"]]
        assert _logit(e["score"]) - _logit(plain) == pytest.approx(want, abs=1e-4)
    assert reply is not None
    assert reply["risk"]["score"] == pytest.approx(loop.latest["c2"].score, abs=1e-6)
