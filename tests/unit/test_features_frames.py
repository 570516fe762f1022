"""Batch frames: round trip, zero-copy decode, clear errors for damaged frames."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from app.features.frames import BATCH_MAGIC, FRAME_VERSION, decode_batch, encode_batch


def _frame(rows: int = 5, cols: int = 3, **meta: Any) -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(rows * 100 + cols)
    arrays = {
        "X": rng.normal(size=(rows, cols)).astype(np.float32),
        "y": rng.integers(-1, 2, size=rows).astype(np.float32),
        "scores": np.where(rng.random(rows) < 0.3, np.nan, rng.random(rows)).astype(np.float32),
        "ts": 1.7e9 + rng.random(rows) * 1000,
    }
    fields: dict[str, Any] = {"silo": 2, "spec_version": "abc123def456", "created_ms": 42, **meta}
    return encode_batch(**fields, **arrays), arrays


def _owns(array: np.ndarray, buffer: object) -> bool:
    base: Any = array
    while base is not None:
        if base is buffer or (isinstance(base, memoryview) and base.obj is buffer):
            return True
        base = getattr(base, "base", None)
    return False


@pytest.mark.parametrize(("rows", "cols"), [(5, 3), (4, 3), (1, 1), (0, 7), (513, 36)])
def test_frame_round_trip(rows: int, cols: int) -> None:
    # Prepare
    frame, arrays = _frame(rows, cols, model_version="m-7", model_round=7)

    # Execute
    decoded = decode_batch(frame)

    # Assert
    meta = decoded.meta
    assert (meta.frame_version, meta.silo, meta.rows, meta.cols) == (FRAME_VERSION, 2, rows, cols)
    assert (meta.spec_version, meta.model_version, meta.model_round) == ("abc123def456", "m-7", 7)
    assert meta.source_events == rows and meta.created_ms == 42
    np.testing.assert_array_equal(decoded.X, arrays["X"])
    np.testing.assert_array_equal(decoded.y, arrays["y"])
    np.testing.assert_array_equal(decoded.scores, arrays["scores"])
    np.testing.assert_array_equal(decoded.ts, arrays["ts"])
    assert decoded.X.shape == (rows, cols) and decoded.ts.dtype == np.float64
    if rows:
        assert meta.ts_min == arrays["ts"].min() and meta.ts_max == arrays["ts"].max()
        assert decoded.ts.flags.aligned and decoded.X.flags.aligned
    else:
        assert meta.ts_min is None and meta.ts_max is None


def test_decode_is_zero_copy() -> None:
    # Prepare
    frame, _ = _frame(64, 8)

    # Execute
    decoded = decode_batch(frame)

    # Assert
    for array in (decoded.X, decoded.y, decoded.scores, decoded.ts):
        assert _owns(array, frame)
        assert not array.flags.owndata and not array.flags.writeable


def test_decode_accepts_memoryview_slices() -> None:
    # Prepare
    frame, arrays = _frame(6, 2)
    padded = bytearray(b"xxxxxxxx" + frame)

    # Execute
    decoded = decode_batch(memoryview(padded)[8:])

    # Assert
    np.testing.assert_array_equal(decoded.X, arrays["X"])
    assert np.shares_memory(decoded.X, np.frombuffer(padded, np.uint8))


def test_layout_header_is_little_endian_and_arrays_are_8_byte_aligned() -> None:
    # Prepare
    frame, _ = _frame(3, 3)

    # Execute
    magic, version, reserved, meta_len = struct.unpack_from("<4sHHI", frame)

    # Assert
    assert (magic, version, reserved) == (BATCH_MAGIC, 1, 0)
    x_offset = 12 + meta_len + (-(12 + meta_len) % 8)
    assert x_offset % 8 == 0
    assert frame[12 + meta_len : x_offset] == bytes(x_offset - 12 - meta_len)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:8], "truncated"),
        (lambda f: f[:-1], "truncated"),
        (lambda f: f + b"\0", "trailing bytes"),
        (lambda f: b"XXXX" + f[4:], "not a batch frame"),
        (lambda f: f[:4] + struct.pack("<H", 9) + f[6:], "unsupported batch frame version 9"),
        (lambda f: f[:8] + struct.pack("<I", 10**6) + f[12:], "truncated in metadata"),
        (lambda f: f[:12] + b"!" + f[13:], "metadata is not JSON"),
    ],
)
def test_damaged_frames_raise_clear_value_errors(mutate: Any, message: str) -> None:
    # Prepare
    frame, _ = _frame(5, 3)

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        decode_batch(mutate(frame))


def test_metadata_without_rows_is_rejected() -> None:
    # Prepare
    meta = b'{"frame_version":1,"spec_version":"x","silo":0,"cols":1}'
    frame = struct.pack("<4sHHI", BATCH_MAGIC, 1, 0, len(meta)) + meta

    # Execute / Assert
    with pytest.raises(ValueError, match="lacks 'rows'"):
        decode_batch(frame)


def test_encode_rejects_mismatched_shapes() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="y must have shape"):
        encode_batch(
            silo=0, spec_version="v", X=np.zeros((3, 2)), y=np.zeros(2), scores=np.zeros(3),
            ts=np.zeros(3),
        )  # fmt: skip
    with pytest.raises(ValueError, match="2-D"):
        encode_batch(
            silo=0, spec_version="v", X=np.zeros(3), y=np.zeros(3), scores=np.zeros(3),
            ts=np.zeros(3),
        )  # fmt: skip
