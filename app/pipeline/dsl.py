"""The pipeline API: sources, filter, as-of join, windows, map, label, silos, federate.

A :class:`Pipeline` is a declarative description; nothing runs at import or build time
(a pipeline module must stay import-pure: every process of a deployment imports it).
Every fluent call returns a *new* :class:`Stream` handle (frozen dataclasses, so a
branch never changes another one). The runners compile the description:
:mod:`app.pipeline.runner` runs it over micro-batches of columns.

Operators see columns, not rows: a filter or map function receives a :class:`Columns`
(one NumPy array per column, ``c.amount`` or ``c["profile.age"]``) and returns a boolean
mask or a mapping of named float arrays, so ``lambda t: t.amount > 0`` is one vectorised
comparison per micro-batch.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.features.profiles import HistoryBounds
from app.pipeline.windows import Agg, Window, WindowPlan

__all__ = [
    "MLP",
    "Columns",
    "Federation",
    "Filter",
    "Join",
    "Label",
    "Map",
    "Pipeline",
    "Route",
    "Source",
    "Stream",
    "Table",
    "WideDeep",
    "WindowStep",
]

logger = logging.getLogger(__name__)

Schema = str
"""``"transaction"`` / ``"customer"`` (the bank schemas, validated) or ``"json"``."""


class Columns(Mapping[str, np.ndarray]):
    """Read-only columns of a micro-batch: ``c.amount`` or ``c["profile.age"]``."""

    __slots__ = ("_data", "n")

    def __init__(self, data: Mapping[str, np.ndarray], n: int) -> None:
        self._data = dict(data)
        self.n = n

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._data[name]
        except KeyError:
            known = ", ".join(sorted(self._data))
            raise KeyError(f"no column {name!r}; the batch has: {known}") from None

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class Source:
    """A Kafka topic read as a stream of events."""

    topic: str
    key: str
    time: str = "ts"
    schema: Schema = "json"
    attrs: tuple[str, ...] = ()
    """Names in the record's ``attrs`` object that become ``attrs.<name>`` columns."""


@dataclass(frozen=True, slots=True)
class Table:
    """A topic read as a versioned table: every value is a new version of its key's row."""

    topic: str
    key: str
    time: str = "ts"
    schema: Schema = "json"
    attrs: tuple[str, ...] = ()
    name: str = "profile"
    history: HistoryBounds = field(default_factory=HistoryBounds)


@dataclass(frozen=True, slots=True)
class Filter:
    fn: Callable[[Columns], Any]


@dataclass(frozen=True, slots=True)
class Join:
    """As-of join: each event gets the table's version with the latest time <= its own."""

    table: Table


@dataclass(frozen=True, slots=True)
class WindowStep:
    plan: WindowPlan


@dataclass(frozen=True, slots=True)
class Map:
    fn: Callable[[Columns], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Label:
    column: str


@dataclass(frozen=True, slots=True)
class Route:
    """Silo of a row: the first of ``by`` that is set, else a stable hash of the key."""

    by: tuple[str, ...]


Step = Filter | Join | WindowStep | Map | Label | Route


@dataclass(frozen=True, slots=True)
class Stream:
    """An immutable handle on a source plus the steps applied to it so far."""

    source: Source
    steps: tuple[Step, ...] = ()

    def _with(self, step: Step) -> Stream:
        return replace(self, steps=(*self.steps, step))

    def filter(self, fn: Callable[[Columns], Any]) -> Stream:
        """Keep the events for which ``fn(columns)`` is True (a boolean mask)."""
        return self._with(Filter(fn))

    def join(self, table: Table) -> Stream:
        """Add the table's columns ``<table.name>.<field>`` as of each event's time.

        Also adds ``<table.name>.missing`` (1.0 when the key has no version at or before
        the event; the fields then hold the schema defaults, NaN for ``json`` tables).
        """
        return self._with(Join(table))

    def window(self, aggs: Sequence[Agg], *, unique: str | None = None,
               **windows: Window) -> Stream:  # fmt: skip
        """Per-key event-time windows: columns ``<window name>_<agg name>``.

        Example: ``.window([fs.count(), fs.sum_("amount")], short=fs.tumbling("1h"))``
        gives ``short_count`` and ``short_sum_amount``, read before the event is added.
        ``unique="txn_id"``: a key's repeated id (or an event older than the kept
        history) is refused to the dead-letter topic instead of being counted twice.
        """
        key = self.source.key
        key_name = key[: -len("_id")] if key.endswith("_id") else key
        plan = WindowPlan(list(windows.items()), list(aggs), unique, key_name)
        return self._with(WindowStep(plan))

    def map(self, fn: Callable[[Columns], Mapping[str, Any]]) -> Stream:
        """The features: ``fn(columns)`` returns ``{name: float array}`` (names in order)."""
        return self._with(Map(fn))

    def label(self, column: str) -> Stream:
        """The training label (1 positive, 0 negative, missing = unknown)."""
        return self._with(Label(column))

    def to_silos(self, by: str | Sequence[str] = ("silo",)) -> Stream:
        """Route each row to the silo named by the first set column of ``by``."""
        return self._with(Route((by,) if isinstance(by, str) else tuple(by)))

    def steps_of(self, kind: type[Any]) -> list[Any]:
        return [s for s in self.steps if isinstance(s, kind)]


@dataclass(frozen=True, slots=True)
class MLP:
    """The default model: a Flax NNX MLP with these hidden layer widths."""

    hidden: tuple[int, ...] = (64, 32)


@dataclass(frozen=True, slots=True)
class WideDeep:
    """The default model: the MLP plus a linear path from the inputs to the logit."""

    hidden: tuple[int, ...] = (64, 32)


@dataclass(frozen=True, slots=True)
class Federation:
    """How the rows are trained: the model and the Flower strategy.

    ``model`` is ``None`` (the run config's, by default wide & deep),
    ``fs.WideDeep(hidden=...)``, ``fs.MLP(hidden=...)``, a Flax NNX module
    class of the documented signature (:mod:`app.model.modules`: built from
    ``(n_features, *, rngs)``, logits of shape ``(batch,)``), or a reference string
    (``"package.module:Class"``, ``"/path/file.py:Class"``).
    """

    rows: Stream
    model: Any = None
    strategy: str = "fedavg"

    def run_config(self) -> dict[str, Any]:
        """``module``, ``hidden`` and ``strategy`` for the Flower run config."""
        out: dict[str, Any] = {"strategy": self.strategy}
        model = self.model
        if isinstance(model, (MLP, WideDeep)):
            out["module"] = "mlp" if isinstance(model, MLP) else "wide-deep"
            out["hidden"] = ",".join(str(int(h)) for h in model.hidden)
        elif model is None:
            pass  # the run config's module
        elif isinstance(model, str):
            out["module"] = model
        elif isinstance(model, type):
            from app.model.modules import module_ref  # Flax: the user's class imported it

            out["module"] = module_ref(model)
        else:
            raise TypeError(
                "federate(model=...) takes fs.WideDeep(...), fs.MLP(...), a Flax NNX module "
                f"class or 'module:Class', not {type(model).__name__}"
            )
        return out


def _check_model(model: Any) -> None:
    """A clear error at ``federate`` time for a model argument that cannot work."""
    if model is None or isinstance(model, (str, MLP, WideDeep)):
        return
    nnx = sys.modules.get("flax.nnx")  # a user's module class means Flax is imported
    if not (isinstance(model, type) and nnx is not None and issubclass(model, nnx.Module)):
        raise TypeError(
            "federate(model=...) takes fs.WideDeep(...), fs.MLP(...), a Flax NNX module "
            f"class (not an instance) or 'module:Class', not {model!r}"
        )


class Pipeline:
    """A named pipeline with ``silos`` data silos (ids ``0..silos-1``).

    Parameters
    ----------
    name : str
        Shown in logs and specs.
    silos : int
        Number of silos the rows are routed to.
    version : str
        Bump it when a map function changes meaning (the spec version hashes it with the
        feature names and window sizes, not the function's code).
    """

    def __init__(self, name: str, silos: int = 3, version: str = "1") -> None:
        if silos < 1:
            raise ValueError(f"a pipeline needs at least one silo, got {silos}")
        self.name = name
        self.silos = silos
        self.version = version
        self.tables: list[Table] = []
        self.sources: list[Source] = []
        self.federation: Federation | None = None
        self.descriptions: dict[str, str] = {}

    def describe(self, **phrases: str) -> Pipeline:
        """Plain-language names of features for the chatbot's explanations.

        ``p.describe(amount_log1p="the transaction amount")``; features without one are
        named from the window they come from, else from the column name.
        """
        self.descriptions.update(phrases)
        return self

    def table(self, topic: str, key: str, *, time: str = "ts", schema: Schema = "json",
              attrs: Sequence[str] = (), name: str = "profile",
              history: HistoryBounds | None = None) -> Table:  # fmt: skip
        """A versioned table read from ``topic`` (see :class:`Table`)."""
        table = Table(topic, key, time, schema, tuple(attrs), name, history or HistoryBounds())
        self.tables.append(table)
        return table

    def stream(self, topic: str, key: str, *, time: str = "ts", schema: Schema = "json",
               attrs: Sequence[str] = ()) -> Stream:  # fmt: skip
        """The event stream read from ``topic``."""
        source = Source(topic, key, time, schema, tuple(attrs))
        self.sources.append(source)
        return Stream(source)

    def federate(self, rows: Stream, model: Any = None, strategy: str = "fedavg") -> Federation:
        """Train on ``rows`` (a stream ending in map, label and to_silos)."""
        if not rows.steps_of(Map):
            raise ValueError("federate() needs rows with a map() step (the features)")
        if not rows.steps_of(Route):
            rows = rows.to_silos()
        _check_model(model)
        self.federation = Federation(rows, model, strategy)
        return self.federation

    @property
    def rows(self) -> Stream:
        if self.federation is None:
            raise ValueError(f"pipeline {self.name!r} has no federate(...) step")
        return self.federation.rows
