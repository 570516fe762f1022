"""The worker's engine: the pipeline over durable state survives a restart, skips replays.

A "restart" here is what the worker does: the state changed since the last commit is
taken (``take_dirty``) into the tables (a dict standing in for a Faust table), a new
processor starts with empty caches and reads through to them. Its rows must be exactly
the rows of one uninterrupted in-memory run (``run_pipeline``) of the same pipeline.
"""

from __future__ import annotations

import contextlib

import orjson

import fedstream as fs
from app.features.event_time import TimePolicy
from app.features.validation import InvalidRecord
from app.pipeline.activity import activity, feature_phrase
from app.pipeline.dsl import WindowStep
from app.pipeline.runner import run_pipeline
from app.pipeline.state import decode_key_state, encode_key_state
from app.pipelines.fraud import pipeline as fraud
from app.produce import SyntheticBank, invalid_events
from app.stream.processor import StreamProcessor
from topics import CUSTOMERS, TRANSACTIONS

SILOS = (0, 1, 2)
ANY_TIME = TimePolicy(1e12, 1e12)  # the event-time check is tested elsewhere
TOPIC = {"customer": CUSTOMERS, "transaction": TRANSACTIONS}


def _fraud_events(n: int = 3_000) -> list[tuple[str, bytes | None, bytes]]:
    """Synthetic bank events, hostile records mixed in, two repeated transactions."""
    bank = SyntheticBank(customers=150, silos=3, seed=11)
    events = [(k, key.encode(), orjson.dumps(v)) for k, key, v in bank.events(n_events=n)]
    bad = [(k, key.encode(), raw) for k, key, raw, _hint in invalid_events(seed=5)]
    txns = [e for e in events if e[0] == "transaction"]
    mixed = events[: n // 3] + bad + events[n // 3 :] + [txns[10], txns[-10]]
    return [(TOPIC[kind], key, raw) for kind, key, raw in mixed if raw is not None]


class Tables:
    """The two Faust tables of a worker, as dicts (what the changelogs would restore)."""

    def __init__(self) -> None:
        self.histories: dict[str, bytes] = {}
        self.states: dict[str, bytes] = {}

    def processor(self, pipeline: fs.Pipeline) -> StreamProcessor:
        return StreamProcessor(pipeline, tuple(range(pipeline.silos)), 10_000, 60_000,
                               load_table=self.histories.get, load_state=self.states.get,
                               time_policy=ANY_TIME)  # fmt: skip

    def commit(self, processor: StreamProcessor) -> None:
        histories, states = processor.take_dirty()
        for entries in histories.values():
            self.histories.update(entries)
        for entries in states.values():
            self.states.update(entries)


def _run(processor: StreamProcessor, records: list[tuple[str, bytes | None, bytes]],
         first_offset: int, batch: int = 100) -> dict[int, list[str]]:  # fmt: skip
    """Table records one by one, stream records in batches; row ids per silo."""
    rows: dict[int, list[str]] = {s: [] for s in processor.silo_ids}
    pending: list[tuple[bytes | None, bytes, int, int]] = []

    def run_pending() -> None:
        out = processor.on_batch(pending, 1_700_000_000_000).rows
        pending.clear()
        if out is not None:
            for row_id, silo in zip(out.ids, out.silos.tolist(), strict=True):
                rows[silo].append(row_id)

    for offset, (topic, key, raw) in enumerate(records, start=first_offset):
        if topic == processor.stream_topic:
            pending.append((key, raw, 0, offset))
            if len(pending) >= batch:
                run_pending()
            continue
        run_pending()  # the phases of run_pipeline: table records before later events
        with contextlib.suppress(InvalidRecord):  # run_pipeline dead-letters it too
            processor.on_table_record(raw, key, 0)
    run_pending()
    return rows


def _in_memory(pipeline: fs.Pipeline, records: list[tuple[str, bytes | None, bytes]]
               ) -> dict[int, list[str]]:  # fmt: skip
    """One uninterrupted run, table records applied in the same order as in ``_run``."""
    phases: list[list[tuple[str, bytes | None, bytes]]] = [[]]
    for record in records:
        if record[0] != pipeline.rows.source.topic and any(
            r[0] == pipeline.rows.source.topic for r in phases[-1]
        ):
            phases.append([])
        phases[-1].append(record)
    out = run_pipeline(pipeline, phases, batch_rows=100)  # type: ignore[arg-type]
    return {s: [i for i, _x, _y in rows] for s, rows in out.rows.items()}


def test_fraud_rows_after_a_restart_from_the_tables_equal_one_uninterrupted_run() -> None:
    # Prepare
    records = _fraud_events()
    half = len(records) // 2
    tables = Tables()

    # Execute: half, commit, a new processor (empty caches) on the tables, the rest
    first = tables.processor(fraud)
    got = _run(first, records[:half], 0)
    tables.commit(first)
    second = tables.processor(fraud)
    later = _run(second, records[half:], half)

    # Assert
    want = _in_memory(fraud, records)
    assert sum(map(len, want.values())) > 1_000
    assert {s: got[s] + later[s] for s in got} == want


def test_records_replayed_after_a_crash_are_not_applied_twice() -> None:
    # Prepare: a run whose state (with later offsets) reached the tables before the crash
    records = _fraud_events(1_500)
    tables = Tables()
    first = tables.processor(fraud)
    rows = sum(map(len, _run(first, records, 0).values()))
    tables.commit(first)

    # Execute: the restarted worker reads the same records again (offsets not committed)
    second = tables.processor(fraud)
    again = _run(second, records, 0)

    # Assert: no row twice; every record that became a row recognised as a replay (the
    # repeats ``unique`` refused changed no offset: refused again, as dead letters)
    assert sum(map(len, again.values())) == 0
    assert rows > 1_000 and second.counters.replayed == rows


def _shops() -> fs.Pipeline:
    p = fs.Pipeline("shops", silos=2)
    shops = p.table("shop.profiles", key="shop", time="t")
    rows = (
        p.stream("shop.payments", key="shop", time="t")
        .join(shops)
        .window(
            [fs.count(), fs.sum_("value"), fs.distinct("kind")],
            recent=fs.tumbling("10m"),
            day=fs.hopping("1d", every="1h"),
        )
        .map(
            lambda c: {
                "value_log1p": c.value,
                "recent_count_log1p": c.recent_count,
                "risk": c["profile.risk"],
            }
        )
        .to_silos(by="region")
    )
    p.federate(rows)
    return p.describe(risk="the shop's risk rating")


def _shop_records(n: int) -> list[tuple[str, bytes | None, bytes]]:
    out: list[tuple[str, bytes | None, bytes]] = []
    for i in range(n):
        shop = f"s{i % 7}"
        if i % 25 == 0:
            doc = {"shop": shop, "t": 1000.0 + i * 30, "risk": (i % 10) / 10}
            out.append(("shop.profiles", shop.encode(), orjson.dumps(doc)))
        doc = {"shop": shop, "t": 1000.0 + i * 30, "value": float(i % 13),
               "kind": "ab"[i % 2], "region": i % 2}  # fmt: skip
        out.append(("shop.payments", shop.encode(), orjson.dumps(doc)))
    return out


def test_a_custom_pipeline_gets_the_same_durability_and_its_own_explanations() -> None:
    # Prepare
    pipeline = _shops()
    records = _shop_records(900)
    half = len(records) // 2
    tables = Tables()

    # Execute
    first = tables.processor(pipeline)
    got = _run(first, records[:half], 0)
    tables.commit(first)
    second = tables.processor(pipeline)
    later = _run(second, records[half:], half)
    state = second.window_state("s1")
    plans = [s.plan for s in pipeline.rows.steps_of(WindowStep)]
    facts = activity(plans, state, 1000.0 + 900 * 30)

    # Assert: rows as one uninterrupted run, state that round-trips, words of the pipeline
    assert {s: got[s] + later[s] for s in got} == _in_memory(pipeline, records)
    assert encode_key_state(decode_key_state(tables.states["s1"])) == tables.states["s1"]
    assert facts["recent_s"] == 600 and facts["day_s"] == 86400
    assert facts["day"]["count"] > 0 and set(facts["day"]) == {"count", "sum_value",
                                                               "distinct_kind"}  # fmt: skip
    assert feature_phrase("risk", pipeline) == "the shop's risk rating"
    assert feature_phrase("recent_count_log1p", pipeline) == "the last-10-minutes count"
    assert feature_phrase("value_log1p", pipeline) == "value"


def test_changes_taken_a_few_keys_at_a_time_are_exactly_the_changes_taken_at_once() -> None:
    # Prepare: two processors fed the same records
    records = _fraud_events(1_500)
    whole, steps = Tables().processor(fraud), Tables().processor(fraud)
    _run(whole, records, 0)
    _run(steps, records, 0)
    want_histories, want_states = whole.take_dirty()

    # Execute: at most 7 keys per take, as a timed commit stages its state
    got_histories: dict[int, dict[str, bytes]] = {}
    got_states: dict[int, dict[str, bytes]] = {}
    sizes = []
    while steps.has_dirty:
        histories, states = steps.take_dirty(max_keys=7)
        sizes.append(sum(map(len, histories.values())) + sum(map(len, states.values())))
        for got, taken in ((got_histories, histories), (got_states, states)):
            for partition, entries in taken.items():
                assert not set(entries) & set(got.get(partition, {}))  # no key twice
                got.setdefault(partition, {}).update(entries)

    # Assert: the same keys and values, at most 7 a take, nothing left
    assert {p: e for p, e in got_histories.items() if e} == {
        p: e for p, e in want_histories.items() if e
    }
    assert {p: e for p, e in got_states.items() if e} == {p: e for p, e in want_states.items() if e}
    assert len(sizes) > 20 and max(sizes) == 7 and min(sizes) >= 1
    assert steps.take_dirty() == ({}, {}) and not whole.has_dirty
