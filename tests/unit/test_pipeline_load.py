"""--pipeline: the built-in fraud pipeline, a module, a file; the spec check of fl up."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.fl.spec_source import SpecMismatch, pipeline_document, pipeline_run_config
from app.pipeline.load import PipelineError, is_builtin, load_pipeline
from app.pipeline.spec import pipeline_spec
from app.pipelines import fraud, uci
from app.settings import Settings
from app.stream.spec import feature_spec

FILE = Path(__file__).parents[1] / "integration" / "pipelines" / "card_export.py"


def test_references_resolve_to_pipelines() -> None:
    assert is_builtin(None) and is_builtin("") and is_builtin("fraud")
    assert load_pipeline("fraud") is fraud.pipeline
    assert load_pipeline("app.pipelines.uci") is uci.pipeline
    assert load_pipeline("app.pipelines.uci:pipeline") is uci.pipeline
    by_file = load_pipeline(str(FILE))
    assert by_file.name == "card-export" and load_pipeline(f"{FILE}:p") is by_file


def test_bad_references_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing.py"))
    with pytest.raises(PipelineError, match="cannot import"):
        load_pipeline("no_such_module_here")
    with pytest.raises(PipelineError, match="no Pipeline named 'nope'"):
        load_pipeline("app.pipelines.uci:nope")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(PipelineError, match="holds 0 Pipeline"):
        load_pipeline(str(empty))


def test_the_built_in_document_is_the_worker_spec() -> None:
    settings = Settings()
    doc = pipeline_document("fraud", settings)
    spec = feature_spec(settings)
    assert (doc["version"], doc["n_features"]) == (spec.version, spec.n_features)
    assert pipeline_spec(fraud.pipeline).version == spec.version  # API == native spec


def test_run_config_from_a_pipeline_and_the_one_line_mismatch() -> None:
    settings = Settings()
    own = pipeline_document(str(FILE), settings)
    cfg = pipeline_run_config(str(FILE), settings, [own])
    assert cfg == {"spec-version": own["version"], "n-features": 4,
                   "module": f"{FILE.resolve()}:ScoreNet", "strategy": "fedavg"}  # fmt: skip
    assert pipeline_run_config(str(FILE), settings, [])["n-features"] == 4  # nothing published
    with pytest.raises(SpecMismatch) as exc:
        pipeline_run_config("fraud", settings, [own])
    line = str(exc.value)
    assert "\n" not in line and own["version"] in line
    assert pipeline_document("fraud", settings)["version"] in line
    assert "pipeline card-export" in line and "pipeline fraud" in line
