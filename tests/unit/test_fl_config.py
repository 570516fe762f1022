"""Run config -> typed FLConfig, and the app's pyproject defaults."""

from __future__ import annotations

import tomllib

import pytest

from app.fl.config import DEFAULTS, FLConfig, FLConfigError
from app.fl.processes import APP_DIR


def test_pyproject_run_config_equals_defaults() -> None:
    # Prepare
    doc = tomllib.loads((APP_DIR / "pyproject.toml").read_text())

    # Execute
    app = doc["tool"]["flwr"]["app"]

    # Assert
    assert app["config"] == DEFAULTS
    assert app["components"] == {
        "serverapp": "app.fl.server_app:app",
        "clientapp": "app.fl.client_app:app",
    }


def test_from_run_config_converts_types_once() -> None:
    cfg = FLConfig.from_run_config(
        {"num-rounds": 3, "lr": "0.5", "hidden": "32, 16", "strategy": "fedprox", "resume": "false"}
    )
    assert cfg.num_rounds == 3
    assert cfg.lr == 0.5
    assert cfg.hidden == (32, 16)
    assert cfg.strategy == "fedprox"
    assert cfg.resume is False
    assert cfg == FLConfig.from_run_config(
        {
            **DEFAULTS,
            "num-rounds": 3,
            "lr": 0.5,
            "hidden": "32,16",
            "strategy": "fedprox",
            "resume": False,
        }
    )


def test_model_config_carries_hyperparameters() -> None:
    cfg = FLConfig(local_epochs=3, lr=0.01, batch_size=64, pos_weight=4.0, hidden=(8,))
    model = cfg.model_config(12, proximal_mu=0.1)
    assert (model.n_features, model.hidden, model.epochs) == (12, (8,), 3)
    assert (model.learning_rate, model.batch_size, model.pos_weight) == (0.01, 64, 4.0)
    assert model.proximal_mu == 0.1


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"strategy": "fedsgd"}, "unknown strategy 'fedsgd'"),
        ({"min-rows": 0}, "min-rows"),
        ({"round-timeout": 0}, "round-timeout"),
        ({"hidden": "0"}, "hidden"),
        ({"lr": "fast"}, "lr='fast'"),
    ],
)
def test_bad_values_fail_with_one_sentence(override: dict[str, object], needle: str) -> None:
    with pytest.raises(FLConfigError, match=needle.replace("(", r"\(")) as info:
        FLConfig.from_run_config(override)
    assert "\n" not in str(info.value)


def test_dp_enabled_only_with_clip() -> None:
    assert not FLConfig().dp_enabled
    assert FLConfig(dp_clip=1.0, dp_noise=0.5).dp_enabled
