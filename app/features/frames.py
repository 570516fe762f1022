"""Binary micro-batch frames (``silo.<id>.batches`` values); layout in topics/FORMATS.md.

::

    offset  size  field
    0       4     magic b"FSB1"
    4       2     u16 frame version (1)
    6       2     u16 reserved (0)
    8       4     u32 metadata length M
    12      M     metadata, orjson object
    ..      pad   zero bytes up to an 8-byte boundary
    A       4*R*C float32 X, C-order [rows, cols]
    ..      4*R   float32 y   (1.0 fraud, 0.0 genuine, -1.0 unknown)
    ..      4*R   float32 scores (NaN = not scored)
    ..      pad   zero bytes up to an 8-byte boundary (only when R is odd)
    ..      8*R   float64 ts  (event time, seconds since the epoch)

All little-endian. :func:`decode_batch` returns NumPy views into the buffer (zero copy;
read-only when the buffer is ``bytes``), so decoding costs the same for 10 or 100,000
rows. The views keep the buffer alive.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "BATCH_MAGIC",
    "FRAME_VERSION",
    "BatchFrame",
    "BatchMeta",
    "decode_batch",
    "encode_batch",
]

logger = logging.getLogger(__name__)

BATCH_MAGIC = b"FSB1"
FRAME_VERSION = 1
_HEADER = struct.Struct("<4sHHI")
_F32 = np.dtype("<f4")
_F64 = np.dtype("<f8")
_PAD = bytes(8)


def _pad(n: int) -> int:
    return -n % 8


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Frame metadata (the JSON part of the frame)."""

    frame_version: int
    spec_version: str
    silo: int
    rows: int
    cols: int
    ts_min: float | None
    ts_max: float | None
    source_events: int
    model_version: str | None
    model_round: int | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class BatchFrame:
    """A decoded frame; the arrays are read-only views into the frame buffer."""

    meta: BatchMeta
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    ts: npt.NDArray[np.float64]


def encode_batch(
    *,
    silo: int,
    spec_version: str,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    ts: npt.ArrayLike,
    source_events: int | None = None,
    model_version: str | None = None,
    model_round: int | None = None,
    created_ms: int | None = None,
) -> bytes:
    """Encode one micro-batch; one ``bytes.join`` over the array buffers.

    Parameters
    ----------
    silo : int
        Silo the rows belong to.
    spec_version : str
        :attr:`FeatureSpec.version` of the rows.
    X, y, scores, ts : array_like
        ``[rows, cols]`` features, ``[rows]`` labels, scores (NaN = unscored) and times.
    source_events : int or None
        Input events behind the frame (default: rows).
    model_version, model_round : str/int or None
        The model that produced ``scores`` (None before the first model).
    created_ms : int or None
        Creation time (default: now).
    """
    x = np.ascontiguousarray(X, dtype=_F32)
    yy = np.ascontiguousarray(y, dtype=_F32)
    ss = np.ascontiguousarray(scores, dtype=_F32)
    tt = np.ascontiguousarray(ts, dtype=_F64)
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D [rows, cols], got shape {x.shape}")
    rows, cols = x.shape
    for name, arr in (("y", yy), ("scores", ss), ("ts", tt)):
        if arr.shape != (rows,):
            raise ValueError(f"{name} must have shape ({rows},), got {arr.shape}")
    meta = orjson.dumps(
        {
            "frame_version": FRAME_VERSION,
            "spec_version": spec_version,
            "silo": silo,
            "rows": rows,
            "cols": cols,
            "ts_min": float(tt.min()) if rows else None,
            "ts_max": float(tt.max()) if rows else None,
            "source_events": rows if source_events is None else source_events,
            "model_version": model_version,
            "model_round": model_round,
            "created_ms": int(time.time() * 1000) if created_ms is None else created_ms,
        }
    )
    head = _HEADER.pack(BATCH_MAGIC, FRAME_VERSION, 0, len(meta))
    pad = _PAD[: _pad(_HEADER.size + len(meta))]
    ts_pad = _PAD[: _pad(4 * rows * (cols + 2))]
    return b"".join((head, meta, pad, x.data, yy.data, ss.data, ts_pad, tt.data))


def _meta(raw: Any) -> BatchMeta:
    if type(raw) is not dict:
        raise ValueError("batch frame metadata is not a JSON object")
    obj: dict[str, Any] = raw
    try:
        meta = BatchMeta(
            frame_version=obj["frame_version"],
            spec_version=obj["spec_version"],
            silo=obj["silo"],
            rows=obj["rows"],
            cols=obj["cols"],
            ts_min=obj.get("ts_min"),
            ts_max=obj.get("ts_max"),
            source_events=obj.get("source_events", obj["rows"]),
            model_version=obj.get("model_version"),
            model_round=obj.get("model_round"),
            created_ms=obj.get("created_ms", 0),
        )
    except KeyError as exc:
        raise ValueError(f"batch frame metadata lacks {exc.args[0]!r}") from None
    for name in ("rows", "cols", "silo"):
        value = getattr(meta, name)
        if type(value) is not int or value < 0:
            raise ValueError(f"batch frame metadata {name!r} must be an int >= 0, got {value!r}")
    return meta


def decode_batch(buf: bytes | bytearray | memoryview) -> BatchFrame:
    """Decode a frame without copying the arrays.

    Raises
    ------
    ValueError
        Bad magic, unsupported version, corrupt metadata, or a buffer whose length does
        not match the metadata (truncated or with trailing bytes).
    """
    view = memoryview(buf)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    size = view.nbytes
    if size < _HEADER.size:
        raise ValueError(f"batch frame truncated: {size} bytes, header needs {_HEADER.size}")
    magic, version, _reserved, meta_len = _HEADER.unpack_from(view)
    if magic != BATCH_MAGIC:
        raise ValueError(f"not a batch frame: magic {bytes(magic)!r} != {BATCH_MAGIC!r}")
    if version != FRAME_VERSION:
        raise ValueError(f"unsupported batch frame version {version} (expected {FRAME_VERSION})")
    start = _HEADER.size + meta_len
    if size < start:
        raise ValueError(f"batch frame truncated in metadata: {size} bytes < {start}")
    try:
        meta = _meta(orjson.loads(view[_HEADER.size : start]))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"batch frame metadata is not JSON: {exc}") from None
    rows, cols = meta.rows, meta.cols
    x_off = start + _pad(start)
    y_off = x_off + 4 * rows * cols
    s_off = y_off + 4 * rows
    t_off = s_off + 4 * rows
    t_off += _pad(t_off - x_off)
    end = t_off + 8 * rows
    if size != end:
        kind = "truncated" if size < end else "has trailing bytes"
        raise ValueError(f"batch frame {kind}: {size} bytes, {rows}x{cols} needs {end}")
    return BatchFrame(
        meta=meta,
        X=np.frombuffer(view, _F32, rows * cols, x_off).reshape(rows, cols),
        y=np.frombuffer(view, _F32, rows, y_off),
        scores=np.frombuffer(view, _F32, rows, s_off),
        ts=np.frombuffer(view, _F64, rows, t_off),
    )
