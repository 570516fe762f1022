"""The pipeline API: a small pipeline end to end in memory, the UCI example, the spec."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

import fedstream as fs
from app.pipeline.runner import run_pipeline
from app.pipelines import uci
from app.produce.uci import UciReplay
from tests.shared_data import find_shared_uci_csv
from topics import CUSTOMERS, TRANSACTIONS


def _payments() -> fs.Pipeline:
    p = fs.Pipeline("payments", silos=2)
    shops = p.table("shops", key="shop", time="t")
    rows = (
        p.stream("payments", key="shop", time="t")
        .filter(lambda c: c.value > 0)
        .join(shops)
        .window(
            [fs.count(), fs.sum_("value"), fs.max_("value"), fs.seen("kind")],
            recent=fs.tumbling("10m"),
        )
        .map(
            lambda c: {
                "value": c.value,
                "risk": c["profile.risk"],
                "n": c.recent_count,
                "total": c.recent_sum_value,
                "top": c.recent_max_value,
                "seen": c.recent_seen_kind,
            }
        )
        .label("fraud")
        .to_silos(by="region")
    )
    p.federate(rows)
    return p


def _rec(topic: str, key: str, **value: object) -> tuple[str, bytes, bytes]:
    return (topic, key.encode(), orjson.dumps(value))


def test_a_small_pipeline_filters_joins_as_of_windows_maps_and_routes() -> None:
    # Prepare: two versions of shop s1's risk; payments before, between and after them
    records = [
        _rec("shops", "s1", shop="s1", t=100.0, risk=0.1),
        _rec("shops", "s1", shop="s1", t=300.0, risk=0.9),
        _rec("payments", "s1", shop="s1", t=50.0, value=5.0, kind="a", region=0, fraud=0),
        _rec("payments", "s1", shop="s1", t=150.0, value=7.0, kind="a", region=1, fraud=1),
        _rec("payments", "s1", shop="s1", t=160.0, value=-1.0, kind="b", region=1, fraud=0),
        _rec("payments", "s1", shop="s1", t=350.0, value=2.0, kind="b", region=1),
        _rec("payments", "s1", shop="s1", t=400.0, value=3.0, kind="b", region=5),
        ("payments", b"s1", b"{not json"),
    ]

    # Execute
    out = run_pipeline(_payments(), [records], batch_rows=3)

    # Assert
    assert out.columns == ["value", "risk", "n", "total", "top", "seen"]
    assert [r.tolist() for _, r, _ in out.rows[0]] == [[5.0, pytest.approx(math.nan, nan_ok=True),
                                                       0, 0, 0, 0]]  # fmt: skip
    got = [(r.tolist(), y) for _, r, y in out.rows[1]]
    assert got == [
        ([7.0, pytest.approx(0.1), 1.0, 5.0, 5.0, 1.0], 1.0),
        ([2.0, pytest.approx(0.9), 2.0, 12.0, 7.0, 0.0], -1.0),
    ]
    reasons = sorted(reason for _, reason in out.dead_letters)
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1].startswith("unknown silo 5")


def test_spec_names_order_and_version_come_from_the_pipeline() -> None:
    # Execute
    spec = fs.pipeline_spec(_payments())
    other = _payments()
    other.version = "2"

    # Assert
    assert spec.columns == ("value", "risk", "n", "total", "top", "seen")
    assert spec.n_features == 6
    assert len(spec.version) == 12
    assert fs.pipeline_spec(other).version != spec.version


def test_map_outputs_must_be_numbers() -> None:
    p = fs.Pipeline("bad")
    rows = p.stream("t", key="k").map(lambda c: {"name": np.array(["x", "y"])})
    p.federate(rows)
    with pytest.raises(ValueError, match="not a number"):
        fs.pipeline_spec(p)


def test_uci_example_gives_one_labelled_row_per_customer() -> None:
    # Prepare
    path = find_shared_uci_csv()
    assert path is not None, "the UCI CSV under shared/data"
    topic = {"customer": CUSTOMERS, "transaction": TRANSACTIONS}
    events = [(topic[k], key.encode(), orjson.dumps(v))
              for k, key, v in UciReplay(path, limit=300).events()]  # fmt: skip

    # Execute
    out = run_pipeline(uci.pipeline, [events])

    # Assert
    rows = [r for silo in out.rows.values() for r in silo]
    assert len(rows) == 300
    x = np.stack([r for _, r, _ in rows])
    assert np.isfinite(x).all()
    assert {y for _, _, y in rows} == {0.0, 1.0}
    assert out.columns == list(fs.pipeline_spec(uci.pipeline).columns)
    assert np.allclose(x[:, out.columns.index("statements_log1p")], math.log1p(5))  # 5 earlier
