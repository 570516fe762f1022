"""Readable text for any fedstream record (used by `fedstream tail`)."""

from __future__ import annotations

import numpy as np
import orjson

__all__ = ["render_record"]


def render_record(
    topic: str | None,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    rows: int = 3,
) -> str:
    head = f"── {topic}[{partition}]@{offset} key={key.decode('utf-8', 'replace') if key else None}"
    if value is None:
        return f"{head} (tombstone)"
    if value[:4] == b"FSB1":
        from app.features.frames import decode_batch

        frame = decode_batch(value)
        meta = frame.meta
        with np.printoptions(precision=3, suppress=True, linewidth=160):
            body = "\n".join(
                f"  {frame.X[i]} y={frame.y[i]:g}" for i in range(min(rows, meta.rows))
            )
        return (
            f"{head} batch frame: silo {meta.silo}, {meta.rows}x{meta.cols},"
            f" spec {meta.spec_version}, model {meta.model_version},"
            f" ts {meta.ts_min:.0f}..{meta.ts_max:.0f}\n{body}"
        )
    if value[:4] == b"FSM1":
        from app.model.frame import decode_model

        model = decode_model(value)
        shapes = [tuple(a.shape) for a in model.arrays]
        return f"{head} model frame: {model.meta}\n  arrays {shapes}"
    try:
        return f"{head}\n{orjson.dumps(orjson.loads(value), option=orjson.OPT_INDENT_2).decode()}"
    except orjson.JSONDecodeError:
        return f"{head} {len(value)} bytes (not JSON): {value[:200]!r}"
