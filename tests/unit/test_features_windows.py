"""Window aggregates: brute-force equivalence, boundaries, no leakage, state codec."""

from __future__ import annotations

import math
import random
from dataclasses import fields

import pytest

from app.features.records import Transaction
from app.features.window_state import decode_state, encode_state
from app.features.windows import (
    AGGREGATORS,
    Count,
    CustomerWindows,
    Distinct,
    Max,
    Sum,
    WindowConfig,
    WindowFeatures,
    activity_summary,
    snapshot,
    update,
)

HOUR = 3600


def _txn(ts: float, amount: float = 10.0, merchant: str = "m", country: str = "DE") -> Transaction:
    return Transaction(f"t{ts}", "c1", ts, amount, merchant, "pos", country)


def _brute_force(history: list[Transaction], txn: Transaction, cfg: WindowConfig) -> WindowFeatures:
    """Aggregates straight from the definition, over every earlier-arrived event."""
    hi = math.floor(txn.ts / cfg.hop_s) * cfg.hop_s + cfg.hop_s
    lo = hi - cfg.long_s
    s_lo = math.floor(txn.ts / cfg.short_s) * cfg.short_s
    s_hi = s_lo + cfg.short_s
    short = [h for h in history if s_lo <= h.ts < s_hi]
    long = [h for h in history if lo <= h.ts < hi]

    def agg(rows: list[Transaction]) -> tuple[int, float, float, float, int, int]:
        total = sum(r.amount for r in rows)
        return (
            len(rows),
            total,
            total / len(rows) if rows else 0.0,
            max((r.amount for r in rows), default=0.0),
            len({r.merchant_category for r in rows}),
            len({r.country for r in rows}),
        )

    return WindowFeatures(
        *agg(short),
        *agg(long),
        seconds_since_prev=_gap(history, txn, cfg),
        customer_mean=sum(h.amount for h in history) / len(history) if history else None,
        seen_merchant=txn.merchant_category in {h.merchant_category for h in long},
        seen_country=txn.country in {h.country for h in long},
    )


def _gap(history: list[Transaction], txn: Transaction, cfg: WindowConfig) -> float | None:
    """Gap to the latest earlier event; 0 when a later one shares its bucket or none is earlier."""
    if not history:
        return None
    bucket = math.floor(txn.ts / cfg.hop_s)
    earlier = [h.ts for h in history if h.ts <= txn.ts]
    same_later = any(h.ts > txn.ts and math.floor(h.ts / cfg.hop_s) == bucket for h in history)
    if same_later or not earlier:
        return 0.0
    return txn.ts - max(earlier)


def _assert_close(actual: WindowFeatures, expected: WindowFeatures) -> None:
    for f in fields(WindowFeatures):
        a, e = getattr(actual, f.name), getattr(expected, f.name)
        if isinstance(e, float):
            assert a == pytest.approx(e, rel=1e-9, abs=1e-6), f.name
        else:
            assert a == e, f.name


@pytest.mark.parametrize(
    ("cfg", "seed"),
    [
        (WindowConfig(), 1),
        (WindowConfig(), 2),
        (WindowConfig(short_s=1200, long_s=3600, hop_s=600), 3),
        (WindowConfig(short_s=600, long_s=600, hop_s=600), 4),
    ],
)
def test_windows_match_brute_force_on_random_out_of_order_events(
    cfg: WindowConfig, seed: int
) -> None:
    # Prepare: increasing event times with a third of them late by less than one hop
    rng = random.Random(seed)
    base = 1_700_000_000.0
    events = []
    for i in range(600):
        base += rng.expovariate(1.0 / (cfg.hop_s / 3))
        late = rng.uniform(0, 0.95 * cfg.hop_s) if rng.random() < 0.33 else 0.0
        events.append(
            Transaction(
                f"t{i}",
                "c1",
                base - late,
                round(rng.lognormvariate(3, 1), 2),
                rng.choice("abcdefgh"),
                "pos",
                rng.choice(["DE", "FR", "IT"]),
            )
        )
    state = CustomerWindows()
    history: list[Transaction] = []

    for txn in events:
        # Execute
        got = snapshot(state, txn.ts, cfg, merchant=txn.merchant_category, country=txn.country)
        update(state, txn, cfg)

        # Assert
        _assert_close(got, _brute_force(history, txn, cfg))
        history.append(txn)
    assert len(state.buckets) <= cfg.long_s // cfg.hop_s + 3


def test_event_never_sees_itself() -> None:
    # Prepare
    cfg = WindowConfig()
    state = CustomerWindows()
    txn = _txn(10 * HOUR + 5, amount=99.0)

    # Execute
    before = snapshot(state, txn.ts, cfg, merchant="m", country="DE")
    update(state, txn, cfg)
    after = snapshot(state, txn.ts, cfg, merchant="m", country="DE")

    # Assert
    assert (before.short_count, before.long_count, before.short_max) == (0, 0, 0.0)
    assert before.seconds_since_prev is None and before.customer_mean is None
    assert not before.seen_merchant and not before.seen_country
    assert (after.short_count, after.long_count, after.short_max) == (1, 1, 99.0)
    assert after.seen_merchant and after.seen_country


def test_tumbling_short_window_boundaries() -> None:
    # Prepare: one event just before and one exactly at the 10:00 boundary
    cfg = WindowConfig()
    state = CustomerWindows()
    update(state, _txn(10 * HOUR - 0.001, amount=1.0), cfg)
    update(state, _txn(10 * HOUR, amount=2.0), cfg)

    # Execute
    at_start = snapshot(state, 10 * HOUR, cfg)
    at_end = snapshot(state, 11 * HOUR - 0.001, cfg)
    next_window = snapshot(state, 11 * HOUR, cfg)

    # Assert
    assert (at_start.short_count, at_start.short_sum) == (1, 2.0)
    assert (at_end.short_count, at_end.short_sum) == (1, 2.0)
    assert next_window.short_count == 0
    assert next_window.long_count == 2


def test_hopping_long_window_ends_at_the_next_hop_boundary() -> None:
    # Prepare: events at 02:00 and 01:59:59 on day 0
    cfg = WindowConfig()
    state = CustomerWindows()
    update(state, _txn(2 * HOUR, amount=5.0), cfg)
    update(state, _txn(2 * HOUR - 1, amount=7.0), cfg)

    # Execute: an event at day 1 01:30 has long window [02:00 day 0, 02:00 day 1)
    inside = snapshot(state, 25 * HOUR + 1800, cfg)
    # an event at day 1 02:00 has long window [03:00 day 0, 03:00 day 1)
    outside = snapshot(state, 26 * HOUR, cfg)

    # Assert
    assert (inside.long_count, inside.long_sum, inside.long_max) == (1, 5.0, 5.0)
    assert outside.long_count == 0
    assert inside.customer_mean == 6.0 and outside.customer_mean == 6.0


def test_seconds_since_prev_uses_the_latest_event_time_and_never_goes_negative() -> None:
    # Prepare
    cfg = WindowConfig()
    state = CustomerWindows()
    update(state, _txn(1000.0), cfg)
    update(state, _txn(900.0), cfg)

    # Execute
    later = snapshot(state, 1300.0, cfg)
    late = snapshot(state, 950.0, cfg)

    # Assert
    assert later.seconds_since_prev == 300.0
    assert late.seconds_since_prev == 0.0


def test_old_buckets_are_pruned() -> None:
    # Prepare
    cfg = WindowConfig()
    state = CustomerWindows()

    # Execute: one event per hour for three days
    for hour in range(72):
        update(state, _txn(hour * HOUR + 10.0), cfg)

    # Assert: only buckets within long_s + hop_s of the previous event remain
    assert min(state.buckets) >= 70 * HOUR + 10 - cfg.long_s - cfg.hop_s
    assert len(state.buckets) <= 27
    assert state.horizon == 46 * HOUR  # the pruned range: older events are refused
    assert state.count == 72


def test_state_round_trips_through_the_codec() -> None:
    # Prepare
    cfg = WindowConfig()
    state = CustomerWindows()
    for i, merchant in enumerate(["a", "b", "a", "c"]):
        update(state, _txn(i * 1000.0, amount=i + 0.5, merchant=merchant, country="FR"), cfg)

    # Execute
    data = encode_state(state)
    decoded = decode_state(data)

    # Assert
    assert decoded == state
    assert encode_state(decoded) == data
    assert snapshot(decoded, 5000.0, cfg, merchant="b") == snapshot(
        state, 5000.0, cfg, merchant="b"
    )
    assert len(data) < 200


def test_decode_state_of_nothing_is_fresh_and_garbage_is_a_value_error() -> None:
    # Execute / Assert
    assert decode_state(None) == CustomerWindows()
    assert decode_state(b"") == CustomerWindows()
    with pytest.raises(ValueError, match="corrupt window state"):
        decode_state(b"{oops")
    with pytest.raises(ValueError, match="corrupt window state"):
        decode_state(b"[99, null, 0, 0, []]")
    with pytest.raises(ValueError, match="corrupt window state"):
        decode_state(b'{"a": 1}')


def test_aggregators_follow_initialize_agg_merge_result() -> None:
    # Prepare
    rows = [_txn(1.0, 3.0, "a", "DE"), _txn(2.0, 5.0, "b", "DE"), _txn(3.0, 1.0, "a", "FR")]

    # Execute
    results = []
    for aggregator in AGGREGATORS:
        left = aggregator.initialize()
        right = aggregator.initialize()
        left = aggregator.agg(left, rows[0], rows[0].ts)
        for row in rows[1:]:
            right = aggregator.agg(right, row, row.ts)
        results.append(aggregator.result(aggregator.merge(left, right)))

    # Assert
    assert results == [3, 9.0, 5.0, 2, 2]
    assert isinstance(AGGREGATORS[0], Count) and isinstance(AGGREGATORS[1], Sum)
    assert isinstance(AGGREGATORS[2], Max) and isinstance(AGGREGATORS[3], Distinct)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"short_s": 1000, "long_s": 86400, "hop_s": 3600},
        {"short_s": 3600, "long_s": 5000, "hop_s": 3600},
        {"short_s": 7200, "long_s": 3600, "hop_s": 3600},
        {"short_s": 0, "long_s": 3600, "hop_s": 3600},
        {"hop_s": -1},
    ],
)
def test_window_config_rejects_inconsistent_sizes(kwargs: dict[str, int]) -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        WindowConfig(**kwargs)


def test_activity_summary_reports_trailing_windows() -> None:
    # Prepare
    cfg = WindowConfig()
    state = CustomerWindows()
    update(state, _txn(100 * HOUR + 10, amount=4.0, merchant="a", country="DE"), cfg)
    update(state, _txn(90 * HOUR, amount=6.0, merchant="b", country="FR"), cfg)
    update(state, _txn(10 * HOUR, amount=100.0, merchant="c"), cfg)

    # Execute
    summary = activity_summary(state, 100 * HOUR + 600, cfg)

    # Assert
    assert summary["short"]["count"] == 1 and summary["short"]["sum"] == 4.0
    assert summary["long"]["count"] == 2 and summary["long"]["mean"] == 5.0
    assert summary["long"]["merchants"] == ["a", "b"]
    assert summary["long"]["countries"] == ["DE", "FR"]
    assert summary["seconds_since_last"] == 590.0
    assert summary["lifetime_count"] == 3 and summary["lifetime_mean"] == pytest.approx(110 / 3)
