"""Model frame encode/decode."""

import struct

import numpy as np
import orjson
import pytest

from app.model.config import ModelConfig
from app.model.frame import (
    FRAME_VERSION,
    MAGIC,
    ModelFrame,
    ModelMeta,
    decode_model,
    encode_model,
    model_version_for,
)
from app.model.params import init_arrays

CONFIG = ModelConfig(n_features=5, hidden=(7, 3))


def _frame() -> ModelFrame:
    arrays = init_arrays(CONFIG)
    meta = ModelMeta(
        model_name="fraud-mlp",
        round=3,
        created_ms=1_700_000_000_000,
        spec_version="abc123",
        model_version=model_version_for(3, arrays),
        n_features=5,
        config=CONFIG.to_dict(),
        metrics={"roc_auc": 0.91, "count": 1200},
    )
    mean = np.arange(5, dtype=np.float32)
    std = np.full(5, 2.0, dtype=np.float32)
    return ModelFrame(meta=meta, arrays=arrays, mean=mean, std=std)


def test_round_trip() -> None:
    # Prepare
    frame = _frame()

    # Execute
    buf = encode_model(frame)
    back = decode_model(buf)

    # Assert
    assert buf[:4] == MAGIC
    assert back.meta == frame.meta
    assert back.meta.model_config() == CONFIG
    assert back.meta.model_version.startswith("3-") and len(back.meta.model_version) == 14
    assert len(back.arrays) == len(frame.arrays)
    for a, b in zip(frame.arrays, back.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float32 and not b.flags.writeable  # zero-copy view
    assert back.mean is not None and back.std is not None
    np.testing.assert_array_equal(back.mean, frame.mean)  # type: ignore[arg-type]
    np.testing.assert_array_equal(back.std, frame.std)  # type: ignore[arg-type]


def test_arrays_are_8_byte_aligned_and_without_standardisation() -> None:
    # Prepare
    frame = ModelFrame(meta=_frame().meta, arrays=[np.ones(3, np.float32), np.ones((2, 2))])

    # Execute
    buf = encode_model(frame)
    back = decode_model(buf)
    (meta_len,) = struct.unpack_from("<I", buf, 8)

    # Assert
    data_start = (12 + meta_len + 7) // 8 * 8
    doc = orjson.loads(buf[12 : 12 + meta_len])
    assert [e["offset"] for e in doc["arrays"]] == [0, 16]  # 12 bytes padded to 16
    assert doc["data_length"] == len(buf) - data_start == 48
    second = np.frombuffer(buf, "<f8", 4, offset=data_start + 16)
    np.testing.assert_array_equal(second, np.ones(4))
    assert back.mean is None and back.std is None
    assert back.arrays[1].dtype == np.float64 and back.arrays[1].shape == (2, 2)


def test_model_version_depends_on_params() -> None:
    arrays = init_arrays(CONFIG)
    changed = [a.copy() for a in arrays]
    changed[1][0] += 1.0
    assert model_version_for(1, arrays) == model_version_for(1, init_arrays(CONFIG))
    assert model_version_for(1, arrays) != model_version_for(1, changed)


def test_bad_magic_raises() -> None:
    buf = bytearray(encode_model(_frame()))
    buf[:4] = b"NOPE"
    with pytest.raises(ValueError, match="magic"):
        decode_model(bytes(buf))


def test_unsupported_version_raises() -> None:
    buf = bytearray(encode_model(_frame()))
    struct.pack_into("<H", buf, 4, FRAME_VERSION + 1)
    with pytest.raises(ValueError, match="version"):
        decode_model(bytes(buf))


@pytest.mark.parametrize("keep", [0, 5, 11, 40])
def test_truncated_header_or_metadata_raises(keep: int) -> None:
    buf = encode_model(_frame())
    with pytest.raises(ValueError, match="truncated"):
        decode_model(buf[:keep])


def test_truncated_data_raises() -> None:
    buf = encode_model(_frame())
    with pytest.raises(ValueError, match="truncated"):
        decode_model(buf[:-8])


def test_corrupt_metadata_raises() -> None:
    buf = bytearray(encode_model(_frame()))
    buf[12] = ord("#")
    with pytest.raises(ValueError, match="metadata"):
        decode_model(bytes(buf))


def test_mean_shape_mismatch_rejected_on_encode() -> None:
    frame = _frame()
    bad = ModelFrame(meta=frame.meta, arrays=frame.arrays, mean=np.zeros(4), std=None)
    with pytest.raises(ValueError, match="mean shape"):
        encode_model(bad)
