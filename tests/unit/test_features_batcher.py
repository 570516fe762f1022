"""Micro-batching: flush by rows and by time, model changes, never mixing silos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.features.batcher import MicroBatcher, SiloBatchers
from app.features.frames import decode_batch
from app.features.validation import InvalidRecord


def _row(value: float, cols: int = 4) -> np.ndarray:
    return np.full(cols, value, np.float32)


def test_full_batch_is_returned_by_add() -> None:
    # Prepare
    batcher = MicroBatcher(silo=1, spec_version="v1", n_features=4, max_rows=3, max_ms=1000)

    # Execute
    outputs = [batcher.add(_row(i), float(i % 2), 0.5, 100.0 + i, now_ms=i) for i in range(7)]

    # Assert
    frames = [decode_batch(o) for o in outputs if o is not None]
    assert [o is not None for o in outputs] == [False, False, True, False, False, True, False]
    assert [f.meta.rows for f in frames] == [3, 3]
    np.testing.assert_array_equal(frames[1].X[:, 0], [3, 4, 5])
    np.testing.assert_array_equal(frames[1].ts, [103, 104, 105])
    assert frames[0].meta.silo == 1 and frames[0].meta.spec_version == "v1"
    assert len(batcher) == 1


def test_batch_is_due_after_max_ms_and_flush_empties_it() -> None:
    # Prepare
    batcher = MicroBatcher(0, "v1", 4, max_rows=100, max_ms=2000)
    assert not batcher.due(10_000) and batcher.flush(10_000) is None

    # Execute
    batcher.add(_row(1), 0.0, None, 1.0, now_ms=1000)
    batcher.add(_row(2), 1.0, 0.9, 2.0, now_ms=2500)
    due_early, due_late = batcher.due(2999), batcher.due(3000)
    frame = batcher.flush(3000)

    # Assert
    assert not due_early and due_late
    assert frame is not None
    decoded = decode_batch(frame)
    assert decoded.meta.rows == 2 and decoded.meta.created_ms == 3000
    assert math.isnan(decoded.scores[0]) and decoded.scores[1] == pytest.approx(0.9)
    assert not batcher.due(10_000) and len(batcher) == 0


def test_model_change_flushes_rows_scored_by_the_previous_model() -> None:
    # Prepare
    batcher = MicroBatcher(0, "v1", 4, max_rows=10)
    batcher.set_model("m1", 1)
    batcher.add(_row(1), 0.0, 0.1, 1.0, now_ms=0)

    # Execute
    same = batcher.set_model("m1", 1)
    flushed = batcher.set_model("m2", 2, now_ms=5)
    batcher.add(_row(2), 0.0, 0.2, 2.0, now_ms=6)
    later = batcher.flush(7)

    # Assert
    assert same is None and flushed is not None and later is not None
    old, new = decode_batch(flushed).meta, decode_batch(later).meta
    assert (old.model_version, old.model_round, old.rows) == ("m1", 1, 1)
    assert (new.model_version, new.model_round, new.rows) == ("m2", 2, 1)
    assert batcher.set_model("m3", 3) is None


def test_next_row_lets_build_row_write_in_place() -> None:
    # Prepare
    batcher = MicroBatcher(0, "v1", 4, max_rows=2)
    view = batcher.next_row()
    view[:] = 7.0

    # Execute
    batcher.add(view, 1.0, None, 1.0, now_ms=0)
    frame = batcher.add(_row(8), 1.0, None, 2.0, now_ms=0)

    # Assert
    assert frame is not None
    np.testing.assert_array_equal(decode_batch(frame).X[:, 0], [7.0, 8.0])


def test_silo_batchers_never_mix_silos() -> None:
    # Prepare
    batchers = SiloBatchers((0, 1, 2), "v1", 4, max_rows=2, max_ms=100)
    frames: list[tuple[int, bytes]] = []

    # Execute
    for i in range(8):
        silo = i % 3
        frame = batchers.add(silo, _row(silo), 0.0, None, float(i), now_ms=i)
        if frame is not None:
            frames.append((silo, frame))
    due = batchers.flush_due(now_ms=106)
    rest = batchers.flush_all(now_ms=200)

    # Assert
    assert [s for s, _ in frames] == [0, 1, 2]
    assert [s for s, _ in due] == [0]
    assert [s for s, _ in rest] == [1]
    frames += due + rest
    assert sum(decode_batch(f).meta.rows for _, f in frames) == 8
    for silo, frame in frames:
        decoded = decode_batch(frame)
        assert decoded.meta.silo == silo
        assert (silo == decoded.X).all()
    assert batchers.flush_all(300) == []


def test_silo_batchers_reject_unknown_silos_and_propagate_model_changes() -> None:
    # Prepare
    batchers = SiloBatchers((0, 1), "v1", 4)
    batchers.add(1, _row(1), 0.0, 0.3, 1.0, now_ms=0)

    # Execute
    flushed = batchers.set_model("m1", 1, now_ms=1)

    # Assert
    assert [s for s, _ in flushed] == [1]
    assert batchers[0].model_version == "m1" and batchers[1].model_round == 1
    with pytest.raises(InvalidRecord, match="unknown silo 5"):
        batchers.add(5, _row(1), 0.0, None, 1.0, now_ms=0)
