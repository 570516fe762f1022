"""The feature spec of the rows, read from Kafka (``features.spec``, published by the worker).

So ``fl up``, ``baseline`` and the demo need no ``spec-version`` / ``n-features``: they
take the newest spec the stream published. Given by hand (synthetic frames, an older
spec's rows), they win, with a warning naming both when no published spec matches
(:func:`app.features.spec.spec_mismatch`).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from app.features.spec import FeatureSpec, describe_spec, spec_mismatch
from topics import FEATURE_SPECS

__all__ = [
    "SpecMismatch",
    "choose_spec",
    "pipeline_document",
    "pipeline_run_config",
    "published_specs",
]

logger = logging.getLogger(__name__)


def published_specs(bootstrap: str, topic: str = FEATURE_SPECS) -> list[dict[str, Any]]:
    """Every spec document on the topic, oldest first (empty if the topic is missing)."""
    from app.fl.kafka_io import scan_topic  # the Kafka client only where it is needed

    docs: list[dict[str, Any]] = []
    for _key, value in scan_topic(bootstrap, topic):
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            logger.warning("ignoring a malformed record on %s", topic)
            continue
        if isinstance(doc, dict) and doc.get("version") and doc.get("n_features"):
            docs.append(doc)
    return sorted(docs, key=lambda d: float(d.get("time") or 0.0))


def choose_spec(version: str, n_features: int, published: list[dict[str, Any]]) -> tuple[str, int]:
    """Spec version and row width to use.

    Missing values come from the matching (else newest) published spec, then the default
    FeatureSpec; given values that no published spec matches are kept, with a warning.
    """
    error = spec_mismatch({"version": version, "n_features": n_features}, published)
    if error is not None:
        logger.warning("%s; using the run config's", error)
    for doc in reversed(published):
        if (not version or doc["version"] == version) and (
            not n_features or doc["n_features"] == n_features
        ):
            return str(doc["version"]), int(doc["n_features"])
    default = FeatureSpec()
    return version or default.version, n_features or default.n_features


class SpecMismatch(ValueError):
    """The chosen pipeline's spec is not the one the stream publishes (one line)."""


def pipeline_document(ref: str, settings: Any) -> dict[str, Any]:
    """The spec document of the pipeline ``ref`` names (built in: from ``settings``)."""
    from app.pipeline.load import is_builtin, load_pipeline

    if is_builtin(ref):
        from app.stream.spec import feature_spec

        return feature_spec(settings).document()
    from app.pipeline.spec import pipeline_spec

    spec = pipeline_spec(load_pipeline(ref))
    return {**spec.to_dict(), "n_features": spec.n_features}


def pipeline_run_config(ref: str, settings: Any, published: list[dict[str, Any]]) -> dict[str, Any]:
    """``spec-version``, ``n-features``, model and strategy of pipeline ``ref`` for the run config.

    Raises
    ------
    SpecMismatch
        When the stream publishes specs and none is this pipeline's (names both).
    app.pipeline.load.PipelineError
        When ``ref`` names no pipeline.
    """
    doc = pipeline_document(ref, settings)
    if published and not any(p.get("version") == doc["version"] for p in published):
        raise SpecMismatch(
            f"feature spec mismatch: pipeline {ref} gives {describe_spec(doc)}, but the "
            f"stream publishes {describe_spec(published[-1])} on features.spec"
        )
    out: dict[str, Any] = {"spec-version": doc["version"], "n-features": doc["n_features"]}
    from app.pipeline.load import is_builtin, load_pipeline

    federation = None if is_builtin(ref) else load_pipeline(ref).federation
    if federation is not None:  # the pipeline's model and strategy (built in: the defaults)
        out.update(federation.run_config())
    return out
