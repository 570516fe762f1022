"""Binary model frame for the compacted topic ``fl.model.global``.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"FSM1"
    4       2     u16 frame version (1)
    6       2     u16 reserved (0)
    8       4     u32 metadata length L
    12      L     orjson metadata (UTF-8 JSON object)
    12+L    p     zero padding so the data section starts on an 8-byte boundary
    D       ...   data section: raw little-endian arrays, each at an 8-byte aligned
                  offset relative to D, zero padded between arrays

The metadata carries the :class:`ModelMeta` fields plus, for every array, its dtype
(NumPy string, e.g. ``"<f4"``), shape, offset (relative to D) and nbytes, and the total
data section length. Decoding returns zero-copy read-only ``np.frombuffer`` views.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.model.config import ModelConfig

__all__ = [
    "FRAME_VERSION",
    "MAGIC",
    "SILO_OFFSETS_KEY",
    "ModelFrame",
    "ModelMeta",
    "decode_model",
    "encode_model",
    "model_version_for",
    "silo_offsets_of",
]

logger = logging.getLogger(__name__)

MAGIC = b"FSM1"
FRAME_VERSION = 1
_HEADER = struct.Struct("<4sHHI")
_ALIGN = 8
_ALLOWED_KINDS = frozenset("biuf")

SILO_OFFSETS_KEY = "silo_offsets"
"""Key in a frame's ``metrics``: ``{silo id: logit correction}`` (``silo-prior``), the
base-rate corrections the next round's prequential scores use; live scores add them too."""


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def model_version_for(round_: int, arrays: Sequence[np.ndarray]) -> str:
    """``f"{round}-{12 hex chars of sha256 over the float32 parameters}"``."""
    h = hashlib.sha256()
    for a in arrays:
        arr = np.ascontiguousarray(a, dtype="<f4")
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return f"{round_}-{h.hexdigest()[:12]}"


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """Descriptive metadata of a published global model.

    Attributes
    ----------
    model_name : str
        Logical model name (e.g. ``"fraud-mlp"``).
    round : int
        Federated round that produced the model.
    created_ms : int
        Creation time, ms since the epoch.
    spec_version : str
        Hash of the feature spec the model expects.
    model_version : str
        E.g. ``f"{round}-{short hash of params}"`` (see :func:`model_version_for`).
    n_features : int
        Input width.
    config : dict
        JSON-friendly model config (``ModelConfig.to_dict()``).
    metrics : dict
        Round metrics (JSON values; non-finite floats are encoded as null).
    frame_version : int
        Layout version of the frame.
    """

    model_name: str
    round: int
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    spec_version: str
    model_version: str
    n_features: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    frame_version: int = FRAME_VERSION

    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` described by ``config`` (n_features from the meta)."""
        return ModelConfig.from_dict({**self.config, "n_features": self.n_features})


def silo_offsets_of(meta: ModelMeta) -> dict[int, float]:
    """The per-silo logit corrections a frame carries (empty when it carries none).

    Entries that are not a silo id with a finite number are ignored (logged), so a frame
    from another writer can never make a score NaN.
    """
    raw = meta.metrics.get(SILO_OFFSETS_KEY)
    if not isinstance(raw, dict):
        return {}
    out: dict[int, float] = {}
    for key, value in raw.items():
        try:
            silo, offset = int(key), float(value)
        except (TypeError, ValueError):
            silo, offset = -1, float("nan")
        if silo < 0 or not np.isfinite(offset) or isinstance(value, bool):
            logger.warning("model %s: ignoring silo offset %r: %r", meta.model_version, key, value)
            continue
        out[silo] = offset
    return out


@dataclass(frozen=True)
class ModelFrame:
    """A model as published on ``fl.model.global``: metadata, parameters, standardisation."""

    meta: ModelMeta
    arrays: list[np.ndarray]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


def _array_entry(arr: np.ndarray, offset: int) -> dict[str, Any]:
    return {
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "offset": offset,
        "nbytes": arr.nbytes,
    }


def _little_endian(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(a)
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"{what}: unsupported dtype {arr.dtype} (numeric only)")
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))


def encode_model(frame: ModelFrame) -> bytes:
    """Encode a :class:`ModelFrame` to bytes (see the module docstring for the layout)."""
    meta = frame.meta
    if meta.frame_version != FRAME_VERSION:
        raise ValueError(f"cannot encode frame_version {meta.frame_version}")
    for name, vec in (("mean", frame.mean), ("std", frame.std)):
        if vec is not None and np.shape(vec) != (meta.n_features,):
            raise ValueError(f"{name} shape {np.shape(vec)} != ({meta.n_features},)")
    blobs: list[np.ndarray] = []
    offset = 0

    def place(a: np.ndarray, what: str) -> dict[str, Any]:
        nonlocal offset
        arr = _little_endian(a, what)
        entry = _array_entry(arr, offset)
        blobs.append(arr)
        offset = _align(offset + arr.nbytes)
        return entry

    entries = [place(a, f"array {i}") for i, a in enumerate(frame.arrays)]
    mean_entry = None if frame.mean is None else place(frame.mean, "mean")
    std_entry = None if frame.std is None else place(frame.std, "std")
    doc = {
        "frame_version": meta.frame_version,
        "model_name": meta.model_name,
        "round": meta.round,
        "created_ms": meta.created_ms,
        "spec_version": meta.spec_version,
        "model_version": meta.model_version,
        "n_features": meta.n_features,
        "config": meta.config,
        "metrics": meta.metrics,
        "arrays": entries,
        "mean": mean_entry,
        "std": std_entry,
        "data_length": offset,
    }
    meta_bytes = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    data_start = _align(_HEADER.size + len(meta_bytes))
    out = bytearray(data_start + offset)
    _HEADER.pack_into(out, 0, MAGIC, FRAME_VERSION, 0, len(meta_bytes))
    out[_HEADER.size : _HEADER.size + len(meta_bytes)] = meta_bytes
    pos = data_start
    for arr in blobs:
        out[pos : pos + arr.nbytes] = arr.tobytes()
        pos = data_start + _align(pos - data_start + arr.nbytes)
    return bytes(out)


def _view(buf: memoryview, data_start: int, entry: Any, what: str) -> np.ndarray:
    try:
        dtype = np.dtype(str(entry["dtype"]))
        shape = tuple(int(d) for d in entry["shape"])
        offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model frame: bad descriptor for {what}: {exc}") from exc
    if dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"model frame: unsupported dtype {dtype} for {what}")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != nbytes or offset < 0 or offset % _ALIGN:
        raise ValueError(f"model frame: inconsistent descriptor for {what}: {entry}")
    start = data_start + offset
    if start + nbytes > len(buf):
        raise ValueError(
            f"model frame truncated: {what} needs bytes [{start}, {start + nbytes}) "
            f"but the frame has {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)


def decode_model(buf: bytes | bytearray | memoryview) -> ModelFrame:
    """Decode bytes produced by :func:`encode_model`.

    Raises
    ------
    ValueError
        On bad magic, unsupported version, truncation or malformed metadata.
    """
    view = memoryview(buf).cast("B")
    if len(view) < _HEADER.size:
        raise ValueError(f"model frame truncated: {len(view)} bytes, header needs {_HEADER.size}")
    magic, version, _reserved, meta_len = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError(f"not a model frame: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FRAME_VERSION:
        raise ValueError(
            f"unsupported model frame version {version} (this reader supports {FRAME_VERSION})"
        )
    meta_end = _HEADER.size + meta_len
    if meta_end > len(view):
        raise ValueError(f"model frame truncated: metadata needs {meta_end} bytes, got {len(view)}")
    try:
        doc = orjson.loads(view[_HEADER.size : meta_end])
        data_start = _align(meta_end)
        data_length = int(doc["data_length"])
        meta = ModelMeta(
            frame_version=int(doc["frame_version"]),
            model_name=str(doc["model_name"]),
            round=int(doc["round"]),
            created_ms=int(doc["created_ms"]),
            spec_version=str(doc["spec_version"]),
            model_version=str(doc["model_version"]),
            n_features=int(doc["n_features"]),
            config=dict(doc["config"]),
            metrics=dict(doc["metrics"]),
        )
        entries = list(doc["arrays"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model frame: malformed metadata: {exc}") from exc
    if data_start + data_length > len(view):
        raise ValueError(
            f"model frame truncated: data needs {data_start + data_length} bytes, got {len(view)}"
        )
    arrays = [_view(view, data_start, e, f"array {i}") for i, e in enumerate(entries)]
    mean = None if doc.get("mean") is None else _view(view, data_start, doc["mean"], "mean")
    std = None if doc.get("std") is None else _view(view, data_start, doc["std"], "std")
    return ModelFrame(meta=meta, arrays=arrays, mean=mean, std=std)
