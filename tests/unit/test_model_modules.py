"""A user's own Flax NNX module: references, parameters, training, frames and scoring."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from app.fl.model_store import choose_resume, make_model_frame
from app.fl.rounds import prequential_round
from app.model.config import ModelConfig
from app.model.frame import decode_model
from app.model.metrics import ScoreHistogram
from app.model.mlp import MLP, build_model
from app.model.modules import ModuleError, build_module, module_class, module_ref
from app.model.numpy_forward import NumpyMLP
from app.model.params import (
    arrays_to_model,
    head_bias_index,
    init_arrays,
    model_to_arrays,
    param_names,
    validate_arrays,
    with_prior,
)
from app.model.scoring import JaxScorer, frame_scorer, scorer_for
from app.model.standardize import MomentStats
from app.model.training import predict, train
from app.pipeline import Pipeline


class Bilinear(nnx.Module):
    """Linear logit plus a low-rank pairwise term: a model that is not an MLP."""

    head_bias = "wide.bias"

    def __init__(self, n_features: int, *, rngs: nnx.Rngs) -> None:
        self.wide = nnx.Linear(n_features, 1, rngs=rngs)
        self.factors = nnx.Linear(n_features, 3, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        f = self.factors(x)
        return self.wide(x)[..., 0] + 0.1 * (f * f).sum(-1)


class Sized(nnx.Module):
    """Takes ``hidden`` too: fedstream passes the run config's widths."""

    def __init__(self, n_features: int, *, hidden: tuple[int, ...], rngs: nnx.Rngs) -> None:
        self.mlp = MLP(n_features, hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out: jax.Array = self.mlp(x)
        return out


REF = f"{__name__}:Bilinear"
CFG = ModelConfig(n_features=5, module=REF, learning_rate=0.02, steps=60, seed=3)


def _problem(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] + 0.5 * rng.normal(size=n) > 1.0).astype(np.float32)
    return x * 3.0 + 10.0, y  # raw scale, standardised by the caller


def test_references_name_builtins_modules_and_files() -> None:
    assert module_ref(MLP) == "mlp" and module_class("mlp") is MLP
    assert module_ref(Bilinear) == REF and module_class(REF) is Bilinear
    pipeline_file = Path(__file__).parents[1] / "integration" / "pipelines" / "card_export.py"
    cls = module_class(f"{pipeline_file}:ScoreNet")  # a file imported by path
    assert module_ref(cls) == f"{pipeline_file.resolve()}:ScoreNet"
    for bad, why in [
        ("nope", "neither built in"),
        (f"{__name__}:Missing", "no nnx.Module class"),
        ("app.model.config:ModelConfig", "no nnx.Module class"),
        ("no_such_pkg_xyz:Model", "cannot import"),
        ("/no/such/file.py:Model", "does not exist"),
    ]:
        with pytest.raises(ModuleError, match=why):
            module_class(bad)


def test_a_worker_never_imports_code_that_a_frame_names(tmp_path: Path) -> None:
    # Prepare: a module file nobody has imported
    path = tmp_path / "evil.py"
    path.write_text("raise SystemExit('imported')\n")

    # Execute / Assert: refused without running it
    with pytest.raises(ModuleError, match="not loaded in this process"):
        module_class(f"{path}:Model", import_code=False)
    with pytest.raises(ModuleError, match="not loaded in this process"):
        module_class("some_unimported_pkg:Model", import_code=False)


def test_the_mlp_keeps_its_canonical_parameters() -> None:
    config = ModelConfig(n_features=6, hidden=(5, 3), seed=7)
    assert param_names(config) == [f"layers.{i}.{k}" for i in range(3) for k in ("kernel", "bias")]
    direct = model_to_arrays(build_model(config))
    assert all(np.array_equal(a, b) for a, b in zip(init_arrays(config), direct, strict=True))
    assert head_bias_index(config) == 5


def test_own_module_parameters_round_trip_in_canonical_order() -> None:
    # Execute
    arrays = init_arrays(CFG)
    names = param_names(CFG)

    # Assert: per layer kernel first; shapes validated; model rebuilt holds the arrays
    assert names == ["factors.kernel", "wide.kernel", "wide.bias"]
    assert [a.shape for a in arrays] == [(5, 3), (5, 1), (1,)]
    back = model_to_arrays(arrays_to_model(CFG, arrays))
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
    with pytest.raises(ValueError, match="expected 3 parameter arrays for model"):
        validate_arrays(CFG, arrays[:2])
    x = np.ones((2, 5), np.float32)
    assert np.allclose(arrays_to_model(CFG, arrays)(x), build_module(CFG)(x))  # type: ignore[operator]


def test_prior_goes_to_the_named_head_bias_or_nowhere() -> None:
    arrays = init_arrays(CFG)
    primed = with_prior(arrays, 0.1, CFG)
    assert primed[2][0] == pytest.approx(np.log(0.1 / 0.9), rel=1e-6)
    assert np.array_equal(primed[0], arrays[0]) and np.array_equal(primed[1], arrays[1])
    plain = ModelConfig(n_features=5, module=f"{__name__}:Sized", hidden=(4,))
    assert head_bias_index(plain) == 3  # the inner MLP's head bias is last, shape (1,)


def test_hidden_reaches_modules_that_take_it() -> None:
    config = ModelConfig(n_features=5, module=f"{__name__}:Sized", hidden=(7, 2))
    assert [a.shape for a in init_arrays(config)][:2] == [(5, 7), (7,)]


def test_own_module_trains_and_predicts() -> None:
    # Prepare
    x, y = _problem()
    m, s = MomentStats.from_rows(x).mean_std()
    arrays = init_arrays(CFG)

    # Execute
    result = train(arrays, x, y, CFG, mean=m, std=s)
    before = predict(arrays, x, CFG, m, s)
    after = predict(result.arrays, x, CFG, m, s)

    # Assert: it learnt the problem (exact AUC from the histogram of the scores)
    auc_before = ScoreHistogram.from_scores(before, y).roc_auc()
    auc_after = ScoreHistogram.from_scores(after, y).roc_auc()
    assert after.shape == (600,) and auc_after > 0.85
    assert auc_after > auc_before + 0.05


def test_prequential_round_and_resume_with_own_module() -> None:
    # Prepare
    x, y = _problem(seed=1)

    # Execute
    result = prequential_round(init_arrays(CFG), x, y, CFG, set_prior=True)
    frame, _ = make_model_frame(
        model_name="m", round_=1, arrays=result.arrays, config=CFG, spec_version="v",
        moments=result.moments, metrics={},
    )  # fmt: skip
    mlp_cfg = ModelConfig(n_features=5, hidden=(3,))

    # Assert: the frame names the module; a run of another module does not resume from it
    assert decode_model(frame).meta.config["module"] == REF
    assert choose_resume([frame], "v", CFG).frame is not None
    point = choose_resume([frame], "v", mlp_cfg)
    assert point.frame is None and "model" in point.rejected[0]


def test_frames_score_with_numpy_for_the_mlp_and_jax_otherwise() -> None:
    # Prepare
    x, y = _problem(seed=2)
    moments = MomentStats.from_rows(x)
    m, s = moments.mean_std()
    mlp_cfg = ModelConfig(n_features=5, hidden=(4,))
    own = train(init_arrays(CFG), x, y, CFG, mean=m, std=s).arrays

    def frame_of(config: ModelConfig, arrays: list[np.ndarray]) -> bytes:
        raw, _ = make_model_frame(model_name="m", round_=1, arrays=arrays, config=config,
                                  spec_version="v", moments=moments, metrics={})  # fmt: skip
        return raw

    # Execute
    fast = frame_scorer(decode_model(frame_of(mlp_cfg, init_arrays(mlp_cfg))))
    jax_scorer = frame_scorer(decode_model(frame_of(CFG, own)))

    # Assert: the right scorer, the very probabilities of predict, explanations by name
    assert isinstance(fast, NumpyMLP) and isinstance(jax_scorer, JaxScorer)
    np.testing.assert_allclose(jax_scorer.predict(x[:50]), predict(own, x[:50], CFG, m, s),
                               rtol=1e-6)  # fmt: skip
    assert jax_scorer.score(x[0]) == pytest.approx(float(predict(own, x[:1], CFG, m, s)[0]))
    top = jax_scorer.explain(x[0], [f"f{i}" for i in range(5)], top_k=2)
    assert len(top) == 2 and {name for name, _ in top} <= {f"f{i}" for i in range(5)}
    with pytest.raises(ValueError):
        scorer_for(CFG, own[:2], m, s)


def test_federate_takes_a_module_class_and_says_what_it_needs() -> None:
    p = Pipeline("t", silos=2)
    rows = p.stream("t.in", key="k").map(lambda c: {"a": c.a}).label("y")
    assert p.federate(rows, model=Bilinear).run_config() == {"strategy": "fedavg", "module": REF}
    assert p.federate(rows).run_config() == {"strategy": "fedavg"}  # the run config's model
    with pytest.raises(TypeError, match="not an instance"):
        p.federate(rows, model=Bilinear(3, rngs=nnx.Rngs(0)))
