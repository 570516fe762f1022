"""The feature spec of a pipeline: column names, order and a version hash.

The version is the first 12 hex digits of sha256 over ``[pipeline version, columns,
window sizes]`` (the same formula as :class:`app.features.spec.FeatureSpec`, so the
built-in fraud pipeline has the very version its frames and models always carried).
The map function's code is not hashed: bump ``Pipeline(version=...)`` when it changes
meaning.

The names come from a dry run of the map step on a two-row batch of zeros (every column
it asks for exists and is 0.0), as Feast validates a transform on synthetic input.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from app.pipeline.dsl import Columns, Map, Pipeline, WindowStep

__all__ = ["PipelineSpec", "pipeline_spec"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """What a consumer of the rows needs: names in order, width and version."""

    name: str
    columns: tuple[str, ...]
    version: str

    @property
    def n_features(self) -> int:
        return len(self.columns)

    def to_dict(self) -> dict[str, object]:
        return {"pipeline": self.name, "version": self.version, "columns": list(self.columns)}


class _Zeros(Columns):
    """Any column a dry run asks for: two zeros."""

    def __init__(self) -> None:
        super().__init__({}, 2)

    def __getitem__(self, name: str) -> np.ndarray:
        return np.zeros(2)

    def __iter__(self) -> Iterator[str]:
        return iter(())


def pipeline_spec(pipeline: Pipeline) -> PipelineSpec:
    """The spec of ``pipeline``'s rows (see the module docstring).

    Raises
    ------
    ValueError
        If the rows have no map step or the map's outputs are not numeric.
    """
    rows = pipeline.rows
    maps = rows.steps_of(Map)
    if not maps:
        raise ValueError(f"pipeline {pipeline.name!r}: the rows need a map() step")
    out = maps[-1].fn(_Zeros())
    columns = tuple(str(k) for k in dict(out))
    for name, value in dict(out).items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"feature {name!r} is {arr.dtype}, not a number")
    if len(set(columns)) != len(columns):
        raise ValueError(f"pipeline {pipeline.name!r}: duplicate feature names")
    sizes = [s for step in rows.steps_of(WindowStep) for _n, w in step.plan.windows
             for s in w.sizes()]  # fmt: skip
    payload = orjson.dumps([pipeline.version, columns, sizes])
    return PipelineSpec(pipeline.name, columns, hashlib.sha256(payload).hexdigest()[:12])
