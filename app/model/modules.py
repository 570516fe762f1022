"""Which Flax NNX module a model is: built-in names, user classes and their references.

The model signature
-------------------
Any ``flax.nnx.Module`` class can be the model if it is defined at module level and

* is constructed as ``Model(n_features, *, rngs)`` (an ``nnx.Rngs``; fedstream seeds it),
  and additionally gets ``hidden=(...)`` (the ``hidden`` run config) when its
  ``__init__`` has a ``hidden`` parameter;
* maps float32 rows ``x`` of shape ``(batch, n_features)`` (already standardised) to
  logits of shape ``(batch,)``: fedstream applies the sigmoid and the loss;
* keeps all trainable state in ``nnx.Param`` (nothing else is federated or published).

Optional: a class attribute ``head_bias = "path.to.bias"`` names the parameter of shape
``(1,)`` that holds the output bias; a fresh model starts it at the base rate's log-odds
(default: the last parameter in canonical order if its shape is ``(1,)``).

The built-in MLP (``"mlp"``, the default) is one such module. A model travels as a
*reference*: ``"mlp"``, ``"package.module:Class"`` or ``"/path/to/file.py:Class"``; the
ClientApps and the ServerApp import it from the run config, and every published model
frame names it in its config, so a worker scores with the same network.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from flax import nnx

from app.model.config import ModelConfig
from app.model.mlp import MLP
from app.model.wide_deep import WideDeep

__all__ = [
    "BUILTIN_MODULES",
    "DEFAULT_MODULE",
    "ModuleError",
    "build_module",
    "module_class",
    "module_ref",
]

logger = logging.getLogger(__name__)

DEFAULT_MODULE = "mlp"
BUILTIN_MODULES: dict[str, type[nnx.Module]] = {"mlp": MLP, "wide-deep": WideDeep}


class ModuleError(ValueError):
    """A model reference that names no usable module (one clear sentence)."""


def _file_module_name(path: Path) -> str:
    return f"fedstream_model_{abs(hash(str(path)))}"


def _loaded_from(path: Path) -> ModuleType | None:
    """A module already imported from ``path`` (a pipeline file, say), if any."""
    for module in list(sys.modules.values()):
        where = getattr(module, "__file__", None)
        if where and Path(where).resolve() == path:
            return module
    return None


def _import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_file_module_name(path), path)
    if spec is None or spec.loader is None:
        raise ModuleError(f"model file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _find_module(where: str, import_code: bool) -> ModuleType:
    if where.endswith(".py"):
        path = Path(where).resolve()
        found = _loaded_from(path)
        if found is not None:
            return found
        if not import_code:
            raise ModuleError(f"model file {where} is not loaded in this process")
        if not path.is_file():
            raise ModuleError(f"model file {where} does not exist")
        return _import_file(path)
    if where in sys.modules:
        return sys.modules[where]
    if not import_code:
        raise ModuleError(f"model module {where} is not loaded in this process")
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise ModuleError(f"cannot import model module {where}: {exc}") from None


def module_class(ref: str, *, import_code: bool = True) -> type[nnx.Module]:
    """The module class that ``ref`` names (see the module docstring).

    ``import_code=False`` only looks at modules this process has imported already: a
    worker scores with the class its own pipeline defines and never runs code that a
    model frame on Kafka names.

    Raises
    ------
    ModuleError
        If ``ref`` names no ``nnx.Module`` class.
    """
    ref = (ref or DEFAULT_MODULE).strip()
    if ref in BUILTIN_MODULES:
        return BUILTIN_MODULES[ref]
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        known = ", ".join(sorted(BUILTIN_MODULES))
        raise ModuleError(
            f"model {ref!r} is neither built in ({known}) nor 'module:Class' / 'file.py:Class'"
        )
    found: Any = _find_module(where, import_code)
    for part in name.split("."):
        found = getattr(found, part, None)
    if not (inspect.isclass(found) and issubclass(found, nnx.Module)):
        raise ModuleError(f"model {ref!r}: {where} has no nnx.Module class named {name!r}")
    return found


def module_ref(cls: type[Any]) -> str:
    """The reference of a module class: built-in name, ``module:Class`` or ``file.py:Class``.

    Classes in a file loaded by path (a pipeline file) are named by the file, which every
    process can import; classes defined inside functions have no reference.
    """
    for name, builtin in BUILTIN_MODULES.items():
        if cls is builtin:
            return name
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise ModuleError(f"model class {qualname} must be defined at module level")
    module = sys.modules.get(cls.__module__)
    where = getattr(module, "__file__", None)
    by_name = cls.__module__ not in {"__main__"} and not cls.__module__.startswith(
        ("fedstream_pipeline_", "fedstream_model_")
    )
    if by_name:
        return f"{cls.__module__}:{qualname}"
    if not where:
        raise ModuleError(f"model class {qualname} has no importable module or file")
    return f"{Path(where).resolve()}:{qualname}"


def build_module(config: ModelConfig, seed: int | None = None) -> nnx.Module:
    """A freshly initialised model of ``config``, deterministic for ``seed``.

    Raises
    ------
    ModuleError
        If the class does not take the documented constructor arguments.
    """
    cls = module_class(config.module)
    rngs = nnx.Rngs(config.seed if seed is None else seed)
    kwargs: dict[str, Any] = {"rngs": rngs}
    if "hidden" in inspect.signature(cls.__init__).parameters:
        kwargs["hidden"] = config.hidden
    try:
        model: nnx.Module = cls(config.n_features, **kwargs)  # type: ignore[call-arg]
    except TypeError as exc:
        raise ModuleError(
            f"model {config.module!r} must be constructed as Model(n_features, *, rngs): {exc}"
        ) from None
    return model
