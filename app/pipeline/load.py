"""Find the pipeline a command runs: the built-in fraud pipeline, a module or a file.

``--pipeline`` (env ``FEDSTREAM_PIPELINE``) takes

* ``fraud`` (the default, also ``""``): the built-in fraud pipeline,
  ``app/pipelines/fraud.py`` (the worker builds it with the deployment's windows and
  attribute columns);
* ``package.module:attr`` (``:attr`` optional): a pipeline in an importable module;
* ``path/to/file.py`` or ``path/to/file.py:attr``: a pipeline in a file.

Without ``:attr`` the module's ``pipeline`` (else ``p``, else its only
:class:`~app.pipeline.dsl.Pipeline`) is used. The module must be import-pure: every
process of a deployment (worker, ``fl up``, ``baseline``) imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

from app.pipeline.dsl import Pipeline

__all__ = ["BUILTIN", "PipelineError", "is_builtin", "load_pipeline"]

logger = logging.getLogger(__name__)

BUILTIN = "fraud"


class PipelineError(ValueError):
    """A ``--pipeline`` value that names no pipeline (one clear sentence)."""


def is_builtin(ref: str | None) -> bool:
    """Whether ``ref`` selects the built-in fraud pipeline."""
    return not ref or ref.strip() == BUILTIN


def _split(ref: str) -> tuple[str, str | None]:
    head, sep, attr = ref.rpartition(":")
    if sep and head and "/" not in attr and not attr.endswith(".py"):
        return head, attr or None
    return ref, None


def _import_file(path: Path) -> ModuleType:
    name = f"fedstream_pipeline_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"pipeline file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_pipeline(ref: str | None) -> Pipeline:
    """The :class:`Pipeline` that ``ref`` names (see the module docstring).

    Raises
    ------
    PipelineError
        If the module or file is missing or holds no pipeline.
    """
    if is_builtin(ref):
        from app.pipelines.fraud import pipeline

        return pipeline
    assert ref is not None
    where, attr = _split(ref.strip())
    path = Path(where)
    try:
        if where.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PipelineError(f"pipeline file {where} does not exist")
            module = _import_file(path)
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise PipelineError(f"pipeline {ref!r}: cannot import {where}: {exc}") from None
    if attr is not None:
        found = getattr(module, attr, None)
        if not isinstance(found, Pipeline):
            raise PipelineError(f"pipeline {ref!r}: {where} has no Pipeline named {attr!r}")
        return found
    for name in ("pipeline", "p"):
        found = getattr(module, name, None)
        if isinstance(found, Pipeline):
            return found
    pipelines = [v for v in vars(module).values() if isinstance(v, Pipeline)]
    if len(pipelines) != 1:
        raise PipelineError(
            f"pipeline {ref!r}: {where} holds {len(pipelines)} Pipeline objects; "
            "name one as module:attr"
        )
    return pipelines[0]
