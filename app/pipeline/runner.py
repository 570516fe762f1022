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
  nature) by the plan compiled to straight-line code (:mod:`app.pipeline.window_code`),
  the outputs as columns. With record offsets given, a record at or below its
  key's last applied offset was applied before a crash and is skipped (``replayed``);
* map: one call of the function on the whole batch; label: a column.

State lives in a :class:`~app.pipeline.state.StateStore`: in memory here, durable in the
worker (:mod:`app.stream.processor`), so both run the same steps on the same state.

:func:`run_pipeline` drives it over in-memory events, phase by phase like the reference
(:mod:`app.features.reference`): a phase's table records first, then its stream records.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from app.features.routing import hash_silo
from app.features.validation import InvalidRecord, check_key, check_silo, parse_customer
from app.features.vectorize import DEFAULT_PROFILE
from app.pipeline.dsl import Columns, Filter, Join, Label, Map, Pipeline, Route, Table, WindowStep
from app.pipeline.records import Parsed, RecordReader, column, customer_values, record_values
from app.pipeline.state import MemoryStore, StateStore, TableVersion
from app.pipeline.window_code import compile_plan

__all__ = ["BatchResult", "BatchRows", "PipelineRunner", "Record", "run_pipeline"]

logger = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]
"""``(topic, key, value)``."""

_MAX_CACHED_VERSIONS = 100_000
"""Joined customer versions whose column values the runner keeps (then starts afresh)."""

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class BatchRows:
    """The rows of a micro-batch in stream order (what the worker sends and enriches)."""

    ids: list[str]
    keys: list[str]
    silos: npt.NDArray[np.int64]
    x: F32
    y: F32
    ts: F64
    aggregates: dict[str, F64]
    """The window steps' output columns (the key's activity before the event)."""
    missing: F64 | None
    """``<table>.missing`` of the first join (1.0: no table version), None without a join."""
    columns: dict[str, np.ndarray]
    """Every column of the batch after the last step (e.g. ``amount``)."""
    raws: list[bytes]


@dataclass(slots=True)
class BatchResult:
    """Rows of one micro-batch, its dead letters ``(raw, reason)`` and replays skipped."""

    out: BatchRows | None = None
    dead_letters: list[tuple[bytes, str]] = field(default_factory=list)
    replayed: int = 0

    @property
    def rows(self) -> dict[int, tuple[list[str], F32, F32, F64]]:
        """Per silo ``(ids, X, y, ts)``, in stream order within each silo."""
        out = self.out
        if out is None:
            return {}
        rows = {}
        for silo in np.unique(out.silos).tolist():
            m = out.silos == silo
            ids = [i for i, keep in zip(out.ids, m.tolist(), strict=True) if keep]
            rows[int(silo)] = (ids, out.x[m], out.y[m], out.ts[m])
        return rows


class PipelineRunner:
    """The compiled pipeline over a state store (see the module docstring).

    Parameters
    ----------
    pipeline : Pipeline
        What to run.
    store : StateStore or None
        Where histories and window states live (None: in memory).
    check_time : callable or None
        ``check_time(ts, now_s)`` raises InvalidRecord for an implausible event time
        (the worker's :class:`~app.features.event_time.TimePolicy`); None: no check.
    """

    def __init__(self, pipeline: Pipeline, store: StateStore | None = None,
                 check_time: Callable[[float, float], Any] | None = None) -> None:  # fmt: skip
        self.pipeline = pipeline
        self.rows_stream = pipeline.rows
        self.silo_ids = tuple(range(pipeline.silos))
        self.store: StateStore = store if store is not None else MemoryStore()
        self.check_time = check_time
        self.columns: list[str] | None = None
        self._window_columns = [c for s in self.rows_stream.steps_of(WindowStep)
                                for c in s.plan.columns]  # fmt: skip
        self._compiled = [compile_plan(s.plan) for s in self.rows_stream.steps_of(WindowStep)]
        src = self.rows_stream.source
        self._reader = RecordReader(src.schema, src.key, src.time, src.attrs)
        self._version_values: dict[int, tuple[Any, dict[str, Any]]] = {}

    @property
    def window_steps(self) -> list[WindowStep]:
        return list(self.rows_stream.steps_of(WindowStep))

    # -- tables -------------------------------------------------------------------------
    def table_of(self, topic: str) -> Table | None:
        return next((t for t in self.pipeline.tables if t.topic == topic), None)

    def on_table_record(self, table: Table, key: bytes | None, raw: bytes,
                        now_s: float | None = None) -> tuple[str, Any]:  # fmt: skip
        """Add one version to its key's history; returns ``(key, version)``.

        Raises InvalidRecord (nothing is stored then).
        """
        if table.schema == "customer":
            customer = parse_customer(raw)
            check_key(key, customer.customer_id)
            check_silo(customer.silo, self.silo_ids)
            version: Any = customer
            kid = customer.customer_id
        else:
            values = record_values(table.schema, raw, table.key, table.time, table.attrs)
            kid = values[table.key]
            check_key(key, kid)
            version = TableVersion(values, values[table.time])
        if now_s is not None and self.check_time is not None:
            self.check_time(version.ts, now_s)
        self.store.history_for_update(table.topic, kid).add(version, table.history)
        return kid, version

    # -- stream -------------------------------------------------------------------------
    def on_batch(
        self,
        records: Sequence[tuple[bytes | None, bytes]],
        offsets: Sequence[int] | None = None,
        now_s: float | None = None,
    ) -> BatchResult:
        """Process one micro-batch of stream records (see the module docstring).

        ``offsets``: each record's offset in its partition (replays are skipped);
        ``now_s``: the worker's clock for the event-time check.
        """
        src = self.rows_stream.source
        result = BatchResult()
        parsed = Parsed()
        check_time = self.check_time if now_s is not None else None
        read = self._reader.read
        for i, (key, raw) in enumerate(records):
            try:
                values, kid, t = read(raw)
                check_key(key, kid)
                if check_time is not None and now_s is not None:
                    check_time(t, now_s)
            except InvalidRecord as exc:
                result.dead_letters.append((raw, exc.reason))
                continue
            parsed.values.append(values)
            parsed.keys.append(kid)
            parsed.raws.append(raw)
            parsed.offsets.append(-1 if offsets is None else offsets[i])
        if not parsed.values:
            return result
        cols = self._reader.columns(parsed.values)
        steps = self.rows_stream.steps
        joins_end = max((i for i, s in enumerate(steps) if isinstance(s, Join)), default=-1)
        silos: np.ndarray | None = None
        window_i = 0
        features: dict[str, Any] | None = None
        label: np.ndarray | None = None
        route = next((s for s in steps if isinstance(s, Route)), Route(("silo",)))
        first_join = next((s.table for s in steps if isinstance(s, Join)), None)
        track = offsets is not None
        if joins_end < 0:
            cols, parsed, silos = self._route(route, cols, parsed, result)
        for i, step in enumerate(steps):
            n = len(parsed.keys)
            if n == 0:
                return result
            keep: np.ndarray | None = None
            if isinstance(step, Filter):
                keep = np.asarray(step.fn(Columns(cols, n)), dtype=bool)
                if keep.shape != (n,):
                    raise ValueError(f"filter returned shape {keep.shape}, want ({n},)")
            elif isinstance(step, Join):
                cols.update(self._join(step.table, cols, parsed.keys, src.time))
            elif isinstance(step, WindowStep):
                outputs, ok = self._window(step, window_i, cols, parsed, src.time, result,
                                           track and window_i == 0)  # fmt: skip
                cols.update(outputs)
                window_i += 1
                if not ok.all():  # refused by ``unique`` or replayed: no state changed
                    keep = ok
            elif isinstance(step, Map):
                features = _features(step.fn(Columns(cols, n)), n)
                cols.update(features)
            elif isinstance(step, Label):  # absent or NaN: unknown (-1.0)
                raw_label = cols.get(step.column, np.full(n, np.nan)).astype(np.float64)
                label = np.where(np.isnan(raw_label), -1.0, raw_label).astype(np.float32)
            if keep is not None:
                cols, parsed = _subset(cols, parsed, keep)
                if silos is not None:
                    silos = silos[keep]
                if label is not None:
                    label = label[keep]
            if i == joins_end:
                cols, parsed, silos = self._route(route, cols, parsed, result)
        if features is None or silos is None:
            raise ValueError("the rows need a map() step")
        if not parsed.keys:
            return result
        names = list(features)
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            raise ValueError(f"map() returned columns {names}, earlier {self.columns}")
        n = len(parsed.keys)
        x = np.stack([cols[c] for c in names], axis=1).astype(np.float32)
        y = label if label is not None else np.full(n, -1.0, np.float32)
        ids_col = cols.get("txn_id", cols[src.key])  # a row's id: txn_id, else its key
        missing = None if first_join is None else cols[f"{first_join.name}.missing"]
        result.out = BatchRows(
            ids=[str(v) for v in ids_col.tolist()], keys=parsed.keys,
            silos=silos.astype(np.int64), x=x, y=y, ts=cols[src.time].astype(np.float64),
            aggregates={c: cols[c] for c in self._window_columns}, missing=missing,
            columns=cols, raws=parsed.raws,
        )  # fmt: skip
        return result

    def _route(
        self, route: Route, cols: dict[str, np.ndarray], parsed: Parsed, result: BatchResult
    ) -> tuple[dict[str, np.ndarray], Parsed, np.ndarray]:
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
        history = self.store.history
        topic = table.topic
        ts = cols[time_col].tolist()
        found: list[Any] = []
        for i, kid in enumerate(keys):
            h = history(topic, kid)
            found.append(None if h is None else h.as_of(ts[i]))
        prefix = f"{table.name}."
        missing = np.array([v is None for v in found], dtype=np.float64)
        out = {f"{prefix}missing": missing}
        if table.schema == "customer":
            default = customer_values(DEFAULT_PROFILE, table.attrs)
            values = self._version_values
            if len(values) > _MAX_CACHED_VERSIONS:
                values.clear()
            rows = []
            for v in found:  # a version's values are built once (versions never change)
                if v is None:
                    rows.append(default)
                    continue
                hit = values.get(id(v))
                if hit is None or hit[0] is not v:
                    hit = values[id(v)] = (v, customer_values(v, table.attrs))
                rows.append(hit[1])
            for name, first in default.items():  # text fields stay objects, numbers float
                dtype = object if isinstance(first, str) else np.float64
                col = np.array([r[name] for r in rows], dtype=dtype)
                if name == "silo":
                    col = np.where(missing == 1.0, np.nan, col)
                out[prefix + name] = col
            return out
        names = sorted({n for v in found if v is not None for n in v.values})
        for name in names:
            out[prefix + name] = column([None if v is None else v.values.get(name) for v in found])
        return out

    def _window(
        self,
        step: WindowStep,
        index: int,
        cols: dict[str, np.ndarray],
        parsed: Parsed,
        time_col: str,
        result: BatchResult,
        track_offsets: bool,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The step's output columns, and which rows it accepted (``unique``, replays)."""
        plan = step.plan
        compiled = self._compiled[index]
        snapshot, update = compiled.snapshot, compiled.update
        key_state, state_changed = self.store.key_state, self.store.state_changed
        keys = parsed.keys
        offsets = parsed.offsets
        n = len(keys)
        ts = cols[time_col].tolist()
        data = [cols[c].tolist() for c in plan.inputs()]
        rows = list(zip(*data, strict=True)) if data else [()] * n
        uids = cols[plan.unique].tolist() if plan.unique is not None else [None] * n
        grain = plan.grain if plan.unique is not None and plan.longest else 0
        skipped = [0.0] * len(plan.columns)  # the outputs of a row not applied
        out: list[list[float]] = []
        ok = np.ones(n, dtype=bool)
        for i, kid in enumerate(keys):
            state_of_key = key_state(kid)
            if track_offsets and offsets[i] <= state_of_key.offset:
                ok[i] = False  # applied before a crash (module docstring)
                result.replayed += 1
                out.append(skipped)
                continue
            windows = state_of_key.windows
            state = windows[index] if len(windows) > index else state_of_key.step(index)
            t = ts[i]
            horizon = state.horizon
            values = None
            if not grain or horizon is None or int(t // grain) * grain >= horizon:
                values = snapshot(state, t, rows[i], uids[i])  # None: a repeated id
            if values is None:
                ok[i] = False
                result.dead_letters.append((parsed.raws[i], plan.admit(state, t, uids[i], kid)
                                            or "refused"))  # fmt: skip
                out.append(skipped)
                continue
            out.append(values)
            update(state, t, rows[i], uids[i])
            if track_offsets:
                state_of_key.offset = offsets[i]
            state_changed(kid)
        arr = np.array(out, dtype=np.float64).reshape(n, len(plan.columns))
        return {name: arr[:, j] for j, name in enumerate(plan.columns)}, ok


def _subset(cols: dict[str, np.ndarray], parsed: Parsed,
            keep: np.ndarray) -> tuple[dict[str, np.ndarray], Parsed]:  # fmt: skip
    out = Parsed()
    idx = np.flatnonzero(keep).tolist()
    out.values = [parsed.values[i] for i in idx]
    out.keys = [parsed.keys[i] for i in idx]
    out.raws = [parsed.raws[i] for i in idx]
    out.offsets = [parsed.offsets[i] for i in idx]
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
