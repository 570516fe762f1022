"""Run a pipeline over micro-batches of columns (pure code: no Kafka, no Faust).

:class:`PipelineRunner` is the compiled form of a :class:`~app.pipeline.dsl.Pipeline`:
table records go into per-key versioned histories; stream records are processed a
micro-batch at a time. Per batch: parse and validate each record (invalid ones become
dead letters with the reason), then the steps in order, each over whole columns:

* filter: one call of the function, a boolean mask;
* join: per row an as-of lookup in the key's history, then the joined columns;
* to_silos: evaluated right after the joins, before any window, so a row with an unknown
  silo is rejected without leaving a trace in the window state;
* window: the per-key state read then updated row by row (state is sequential by
  nature), the outputs as columns;
* map: one call of the function on the whole batch; label: a column.

:func:`run_pipeline` drives it over in-memory events, phase by phase like the reference
(:mod:`app.features.reference`): a phase's table records first, then its stream records.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from app.features.profiles import ProfileHistory
from app.features.routing import hash_silo
from app.features.validation import (
    InvalidRecord,
    check_key,
    check_silo,
    parse_customer,
    parse_transaction,
)
from app.features.vectorize import DEFAULT_PROFILE
from app.pipeline.dsl import Columns, Filter, Join, Label, Map, Pipeline, Route, Table, WindowStep
from app.pipeline.windows import KeyWindows

__all__ = ["BatchResult", "PipelineRunner", "Record", "run_pipeline"]

logger = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]
"""``(topic, key, value)``."""

_TXN_FIELDS = ("txn_id", "customer_id", "merchant_category", "channel", "country")
_TXN_NUMBERS = ("ts", "amount")
_CUSTOMER_STRINGS = ("segment", "home_country")
_CUSTOMER_NUMBERS = ("ts", "age", "income_band", "credit_limit", "tenure_months")


@dataclass(slots=True)
class BatchResult:
    """Rows of one micro-batch per silo, and its dead letters ``(raw, reason)``."""

    rows: dict[int, tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.float32],
                          npt.NDArray[np.float64]]] = field(default_factory=dict)  # fmt: skip
    dead_letters: list[tuple[bytes, str]] = field(default_factory=list)


class _Parsed:
    """Valid records of a batch as plain values: one dict per record."""

    __slots__ = ("keys", "raws", "values")

    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.raws: list[bytes] = []


def _record_values(schema: str, raw: bytes, key_field: str, time_field: str,
                   attrs: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """One record's columns (raises InvalidRecord)."""
    if schema == "transaction":
        t = parse_transaction(raw)
        out: dict[str, Any] = {n: getattr(t, n) for n in (*_TXN_FIELDS, *_TXN_NUMBERS)}
        out["silo"] = math.nan if t.silo is None else float(t.silo)
        out["label"] = math.nan if t.label is None else float(t.label)
        for a in attrs:
            out[f"attrs.{a}"] = t.attrs.get(a, 0.0)
        return out
    if schema == "customer":
        c = parse_customer(raw)
        out = _customer_values(c, attrs)
        out["customer_id"] = c.customer_id
        return out
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord("value must be a JSON object")
    for need in (key_field, time_field):
        if obj.get(need) is None:
            raise InvalidRecord(f"missing field {need!r}")
    ts = obj[time_field]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise InvalidRecord(f"field {time_field!r}: must be a finite number (seconds)")
    obj[key_field] = str(obj[key_field])
    obj[time_field] = float(ts)
    return obj


def _customer_values(c: Any, attrs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {n: float(getattr(c, n)) for n in _CUSTOMER_NUMBERS}
    out.update({n: getattr(c, n) for n in _CUSTOMER_STRINGS})
    out["silo"] = float(c.silo)
    for a in attrs:
        out[f"attrs.{a}"] = c.attrs.get(a, 0.0)
    return out


def _column(values: list[Any]) -> np.ndarray:
    """float64 for numbers (None -> NaN), object arrays for anything else."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
           for v in values):  # fmt: skip
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)


class PipelineRunner:
    """The compiled pipeline with its state (histories per table, windows per step)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.rows_stream = pipeline.rows
        self.silo_ids = tuple(range(pipeline.silos))
        self.histories: dict[str, dict[str, ProfileHistory[Any]]] = {
            t.topic: {} for t in pipeline.tables
        }
        self.windows: list[dict[str, KeyWindows]] = [
            {} for _ in self.rows_stream.steps_of(WindowStep)
        ]
        self.columns: list[str] | None = None

    # -- tables -------------------------------------------------------------------------
    def table_of(self, topic: str) -> Table | None:
        return next((t for t in self.pipeline.tables if t.topic == topic), None)

    def on_table_record(self, table: Table, key: bytes | None, raw: bytes) -> None:
        """Add one version to its key's history; raises InvalidRecord."""
        if table.schema == "customer":
            customer = parse_customer(raw)
            check_key(key, customer.customer_id)
            check_silo(customer.silo, self.silo_ids)
            version: Any = customer
            kid = customer.customer_id
        else:
            values = _record_values(table.schema, raw, table.key, table.time, table.attrs)
            kid = values[table.key]
            check_key(key, kid)
            version = _Version(values, values[table.time])
        self.histories[table.topic].setdefault(kid, ProfileHistory()).add(version, table.history)

    # -- stream -------------------------------------------------------------------------
    def on_batch(self, records: Sequence[tuple[bytes | None, bytes]]) -> BatchResult:
        """Process one micro-batch of stream records (see the module docstring)."""
        src = self.rows_stream.source
        result = BatchResult()
        parsed = _Parsed()
        for key, raw in records:
            try:
                values = _record_values(src.schema, raw, src.key, src.time, src.attrs)
                check_key(key, values[src.key])
            except InvalidRecord as exc:
                result.dead_letters.append((raw, exc.reason))
                continue
            parsed.values.append(values)
            parsed.keys.append(values[src.key])
            parsed.raws.append(raw)
        if not parsed.values:
            return result
        fields = dict.fromkeys(n for v in parsed.values for n in v)  # a field may be absent
        cols = {name: _column([v.get(name) for v in parsed.values]) for name in fields}
        keep = np.ones(len(parsed.values), dtype=bool)
        steps = self.rows_stream.steps
        joins_end = max((i for i, s in enumerate(steps) if isinstance(s, Join)), default=-1)
        silos: np.ndarray | None = None
        window_i = 0
        features: dict[str, Any] | None = None
        label: np.ndarray | None = None
        route = next((s for s in steps if isinstance(s, Route)), Route(("silo",)))
        if joins_end < 0:
            cols, parsed, silos = self._route(route, cols, parsed, result)
        for i, step in enumerate(steps):
            n = len(parsed.keys)
            if n == 0:
                return result
            if isinstance(step, Filter):
                keep = np.asarray(step.fn(Columns(cols, n)), dtype=bool)
                if keep.shape != (n,):
                    raise ValueError(f"filter returned shape {keep.shape}, want ({n},)")
                cols, parsed = _subset(cols, parsed, keep)
                if silos is not None:
                    silos = silos[keep]
            elif isinstance(step, Join):
                cols.update(self._join(step.table, cols, parsed.keys, src.time))
            elif isinstance(step, WindowStep):
                outputs, ok = self._window(step, window_i, cols, parsed, src.time, result)
                cols.update(outputs)
                window_i += 1
                if not ok.all():  # refused by ``unique``: dead letters, no state changed
                    cols, parsed = _subset(cols, parsed, ok)
                    if silos is not None:
                        silos = silos[ok]
            elif isinstance(step, Map):
                features = _features(step.fn(Columns(cols, n)), n)
                cols.update(features)
            elif isinstance(step, Label):  # absent or NaN: unknown (-1.0)
                raw_label = cols.get(step.column, np.full(n, np.nan)).astype(np.float64)
                label = np.where(np.isnan(raw_label), -1.0, raw_label).astype(np.float32)
            if i == joins_end:
                cols, parsed, silos = self._route(route, cols, parsed, result)
        if features is None or silos is None:
            raise ValueError("the rows need a map() step")
        names = list(features)
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            raise ValueError(f"map() returned columns {names}, earlier {self.columns}")
        x = np.stack([features[c] for c in names], axis=1).astype(np.float32)
        y = label if label is not None else np.full(len(parsed.keys), -1.0, np.float32)
        ts = cols[src.time].astype(np.float64)
        ids = cols.get("txn_id", cols[src.key])  # a row's id: txn_id, else its key
        for silo in np.unique(silos).tolist():
            m = silos == silo
            row_ids = [str(v) for v in ids[m]]
            result.rows[int(silo)] = (row_ids, x[m], y[m], ts[m])
        return result

    def _route(
        self, route: Route, cols: dict[str, np.ndarray], parsed: _Parsed, result: BatchResult
    ) -> tuple[dict[str, np.ndarray], _Parsed, np.ndarray]:
        n = len(parsed.keys)
        silos = np.empty(n, dtype=np.int64)
        ok = np.ones(n, dtype=bool)
        by = [cols[c] for c in route.by if c in cols]
        for i in range(n):
            silo = None
            for col in by:
                v = col[i]
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    silo = int(v)
                    break
            try:
                silos[i] = (hash_silo(parsed.keys[i], self.silo_ids) if silo is None
                            else check_silo(silo, self.silo_ids))  # fmt: skip
            except InvalidRecord as exc:
                ok[i] = False
                result.dead_letters.append((parsed.raws[i], exc.reason))
        if ok.all():
            return cols, parsed, silos
        cols, parsed = _subset(cols, parsed, ok)
        return cols, parsed, silos[ok]

    def _join(self, table: Table, cols: dict[str, np.ndarray], keys: list[str],
              time_col: str) -> dict[str, np.ndarray]:  # fmt: skip
        histories = self.histories[table.topic]
        ts = cols[time_col]
        found: list[Any] = []
        for i, kid in enumerate(keys):
            h = histories.get(kid)
            found.append(None if h is None else h.as_of(float(ts[i])))
        prefix = f"{table.name}."
        missing = np.array([v is None for v in found], dtype=np.float64)
        out = {f"{prefix}missing": missing}
        if table.schema == "customer":
            default = _customer_values(DEFAULT_PROFILE, table.attrs)
            rows = [default if v is None else _customer_values(v, table.attrs) for v in found]
            for name in default:
                col = _column([r[name] for r in rows])
                if name == "silo":
                    col = np.where(missing == 1.0, np.nan, col)
                out[prefix + name] = col
            return out
        names = sorted({n for v in found if v is not None for n in v.values})
        for name in names:
            out[prefix + name] = _column([None if v is None else v.values.get(name) for v in found])
        return out

    def _window(
        self,
        step: WindowStep,
        index: int,
        cols: dict[str, np.ndarray],
        parsed: _Parsed,
        time_col: str,
        result: BatchResult,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The step's output columns, and which rows it accepted (``unique``)."""
        plan = step.plan
        states = self.windows[index]
        keys = parsed.keys
        ts = cols[time_col].tolist()
        data = [cols[c].tolist() for c in plan.inputs()]
        rows = list(zip(*data, strict=True)) if data else [()] * len(keys)
        uids = cols[plan.unique].tolist() if plan.unique is not None else [None] * len(keys)
        out = np.zeros((len(keys), len(plan.columns)), dtype=np.float64)
        ok = np.ones(len(keys), dtype=bool)
        for i, kid in enumerate(keys):
            state = states.get(kid)
            if state is None:
                state = states[kid] = KeyWindows()
            refused = plan.admit(state, ts[i], uids[i], kid)
            if refused is not None:
                ok[i] = False
                result.dead_letters.append((parsed.raws[i], refused))
                continue
            row = list(rows[i])
            out[i] = plan.snapshot(state, ts[i], row)
            plan.update(state, ts[i], row, uids[i])
        return {name: out[:, j] for j, name in enumerate(plan.columns)}, ok


@dataclass(slots=True)
class _Version:
    """A version of a ``json`` table row (what the history keeps)."""

    values: dict[str, Any]
    ts: float


def _subset(cols: dict[str, np.ndarray], parsed: _Parsed,
            keep: np.ndarray) -> tuple[dict[str, np.ndarray], _Parsed]:  # fmt: skip
    out = _Parsed()
    idx = np.flatnonzero(keep).tolist()
    out.values = [parsed.values[i] for i in idx]
    out.keys = [parsed.keys[i] for i in idx]
    out.raws = [parsed.raws[i] for i in idx]
    return {k: v[keep] for k, v in cols.items()}, out


def _features(mapped: Any, n: int) -> dict[str, np.ndarray]:
    """The map's output as float64 columns of length ``n`` (scalars are broadcast)."""
    out: dict[str, np.ndarray] = {}
    for name, value in dict(mapped).items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(n, float(arr))
        if arr.shape != (n,):
            raise ValueError(f"feature {name!r} has shape {arr.shape}, want ({n},)")
        out[str(name)] = arr
    return out


@dataclass(slots=True)
class RunOutput:
    """All rows of an in-memory run: per silo ``(ids, X, y, ts)`` lists, dead letters."""

    rows: dict[int, list[tuple[str, npt.NDArray[np.float32], float]]]
    dead_letters: list[tuple[bytes, str]]
    columns: list[str]


def run_pipeline(
    pipeline: Pipeline,
    phases: Iterable[Sequence[Record]],
    batch_rows: int = 512,
) -> RunOutput:
    """Run ``pipeline`` over in-memory records, phase by phase (module docstring)."""
    runner = PipelineRunner(pipeline)
    rows: dict[int, list[tuple[str, npt.NDArray[np.float32], float]]] = {
        s: [] for s in runner.silo_ids
    }
    dead: list[tuple[bytes, str]] = []
    stream_topic = runner.rows_stream.source.topic
    for phase in phases:
        for topic, key, raw in phase:
            table = runner.table_of(topic)
            if table is not None:
                try:
                    runner.on_table_record(table, key, raw)
                except InvalidRecord as exc:
                    dead.append((raw, exc.reason))
        stream = [(k, v) for t, k, v in phase if t == stream_topic]
        for start in range(0, len(stream), batch_rows):
            out = runner.on_batch(stream[start : start + batch_rows])
            dead.extend(out.dead_letters)
            for silo, (ids, x, y, _ts) in out.rows.items():
                rows[silo].extend(zip(ids, x, y.tolist(), strict=True))
    return RunOutput(rows, dead, runner.columns or [])
