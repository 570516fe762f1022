"""Parameters <-> arrays: order, round-trip, determinism, validation."""

import numpy as np
import pytest

from app.model.config import ModelConfig
from app.model.mlp import build_model
from app.model.params import (
    arrays_to_model,
    init_arrays,
    layout_for,
    model_to_arrays,
    param_names,
    param_shapes,
    with_prior,
)

CONFIG = ModelConfig(n_features=6, hidden=(5, 3), seed=7)


def test_init_arrays_have_canonical_order_and_float32() -> None:
    # Execute
    arrays = init_arrays(CONFIG)

    # Assert
    assert [a.shape for a in arrays] == [(6, 5), (5,), (5, 3), (3,), (3, 1), (1,)]
    assert [a.shape for a in arrays] == param_shapes(CONFIG)
    assert all(a.dtype == np.float32 for a in arrays)
    assert param_names(CONFIG)[:2] == ["layers.0.kernel", "layers.0.bias"]


def test_round_trip_preserves_values_and_order() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype(np.float32) for s in param_shapes(CONFIG)]

    # Execute
    back = model_to_arrays(arrays_to_model(CONFIG, arrays))

    # Assert
    assert len(back) == len(arrays)
    for a, b in zip(arrays, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_init_is_deterministic_for_a_seed() -> None:
    # Execute
    a1, a2 = init_arrays(CONFIG), init_arrays(CONFIG)
    other = init_arrays(ModelConfig(n_features=6, hidden=(5, 3), seed=8))

    # Assert
    for x, y in zip(a1, a2, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a1[0], other[0])


def test_layout_forward_matches_nnx_model() -> None:
    # Prepare
    arrays = init_arrays(CONFIG)
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    layout = layout_for(CONFIG.n_features, CONFIG.hidden)

    # Execute
    via_layout = np.asarray(layout.logits(arrays, x))
    via_model = np.asarray(build_model(CONFIG)(x))

    # Assert
    np.testing.assert_allclose(via_layout, via_model, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a[:-1], "expected 6 parameter arrays"),
        (lambda a: [a[0][:, :4], *a[1:]], "layers.0.kernel: expected shape"),
    ],
)
def test_shape_mismatch_raises_clear_error(mutate, message) -> None:  # type: ignore[no-untyped-def]
    # Prepare
    arrays = mutate(init_arrays(CONFIG))

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        arrays_to_model(CONFIG, arrays)


def test_config_dict_round_trip() -> None:
    # Execute
    back = ModelConfig.from_dict({**CONFIG.to_dict(), "unknown": 1})

    # Assert
    assert back == CONFIG


def test_with_prior_sets_only_the_head_bias_to_the_log_odds() -> None:
    # Prepare
    arrays = init_arrays(CONFIG)

    # Execute
    primed = with_prior(arrays, 0.2)

    # Assert: head bias = logit(0.2); everything else (and the input) untouched
    assert primed[-1].shape == (1,) and primed[-1].dtype == np.float32
    assert primed[-1][0] == pytest.approx(np.log(0.2 / 0.8), rel=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(primed[:-1], arrays[:-1], strict=True))
    assert arrays[-1][0] != pytest.approx(np.log(0.2 / 0.8))
    assert all(np.array_equal(a, b) for a, b in zip(with_prior(arrays, 0.0), arrays, strict=True))
    with pytest.raises(ValueError, match="prior"):
        with_prior(arrays, 1.0)
