"""Model frames of rounds and the choice of the model to resume from."""

from __future__ import annotations

import numpy as np

from app.fl.model_store import choose_resume, make_model_frame, moments_of
from app.model.config import ModelConfig
from app.model.frame import decode_model
from app.model.params import init_arrays
from app.model.standardize import MomentStats

CFG = ModelConfig(n_features=4, hidden=(3,))


def _frame(round_: int, spec: str = "v1", config: ModelConfig = CFG) -> bytes:
    X = np.arange(40, dtype=np.float64).reshape(10, 4)
    frame, _ = make_model_frame(
        model_name="m",
        round_=round_,
        arrays=init_arrays(config),
        config=config,
        spec_version=spec,
        moments=MomentStats.from_rows(X),
        metrics={"round": round_},
    )
    return frame


def test_frame_carries_standardisation_and_exact_moments() -> None:
    frame = decode_model(_frame(3))
    X = np.arange(40, dtype=np.float64).reshape(10, 4)
    expected = MomentStats.from_rows(X)
    mean, std = expected.mean_std()
    assert frame.meta.round == 3 and frame.meta.spec_version == "v1"
    assert frame.mean is not None and np.allclose(frame.mean, mean)
    assert frame.std is not None and np.allclose(frame.std, std)
    got = moments_of(frame)
    assert got.count == 10 and np.allclose(got.sum, expected.sum)
    assert np.allclose(got.sumsq, expected.sumsq)


def test_resume_picks_newest_compatible_and_reports_the_others() -> None:
    # Prepare: compatible 1, 2; then an other spec, an other architecture, garbage
    frames = [
        _frame(1),
        _frame(2),
        _frame(9, spec="v0"),
        _frame(8, config=ModelConfig(n_features=4, hidden=(5,))),
        b"junk",
    ]

    # Execute
    point = choose_resume(frames, "v1", CFG)

    # Assert
    assert point.frame is not None and point.round == 2
    assert len(point.rejected) == 3
    assert any("feature spec 'v0'" in r for r in point.rejected)
    assert any("architecture" in r for r in point.rejected)


def test_resume_without_compatible_model_starts_at_zero() -> None:
    point = choose_resume([_frame(4, spec="old")], "v1", CFG)
    assert point.frame is None and point.round == 0 and point.rejected
