"""CSV files as they come: no key column, names kept, time and label found, relative time."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.produce.csv_replay import DEFAULT_START, CsvReplay, CsvReplayError

RAW = """\
Step,TxScore,Amount,isFraud,Merchant Name
0,0.5,10,0,shop a
3600,1.5,20,1,shop b
60,-2,5,0,shop c
"""


def _replay(tmp_path: Path, text: str = RAW, **kw: object) -> tuple[CsvReplay, list]:
    path = tmp_path / "raw.csv"
    path.write_text(text)
    replay = CsvReplay(path, **kw)  # type: ignore[arg-type]
    return replay, list(replay.events())


def test_no_key_column_makes_every_row_its_own_customer_and_says_so(tmp_path: Path) -> None:
    # Execute
    replay, events = _replay(tmp_path)

    # Assert
    txns = [v for kind, _, v in events if kind == "transaction"]
    assert [t["customer_id"] for t in txns] == ["raw-2", "raw-4", "raw-3"]  # time order
    assert len({t["customer_id"] for t in txns}) == 3
    assert any(n.startswith("key: no key column") for n in replay.notes)


def test_time_and_label_found_by_name_and_original_names_kept(tmp_path: Path) -> None:
    # Execute
    replay, events = _replay(tmp_path, start=1_700_000_000.0)

    # Assert
    txns = [v for kind, _, v in events if kind == "transaction"]
    assert [t["label"] for t in txns] == [0, 0, 1]
    assert txns[2]["attrs"] == {"TxScore": 1.5}  # not lower-cased; text column left out
    assert replay.attr_names == ["TxScore"]
    assert "time: column 'Step' (found by its name)" in replay.notes
    assert "label: column 'isFraud' (found by its name, 0/1)" in replay.notes
    assert any("FEDSTREAM_TXN_ATTRS='TxScore'" in n for n in replay.notes)


def test_relative_time_counts_from_start_and_warns_without_it(tmp_path: Path) -> None:
    # Execute
    with_start, given = _replay(tmp_path, start=1_700_000_000.0)
    without, default = _replay(tmp_path)

    # Assert
    assert [v["ts"] for k, _, v in given if k == "transaction"] == [
        1_700_000_000.0, 1_700_000_060.0, 1_700_003_600.0,
    ]  # fmt: skip
    assert next(v["ts"] for k, _, v in default if k == "transaction") == DEFAULT_START
    assert not any(n.startswith("WARNING") for n in with_start.notes)
    (warning,) = [n for n in without.notes if n.startswith("WARNING")]
    assert "--start" in warning and "meaningless" in warning


def test_absolute_times_are_left_alone(tmp_path: Path) -> None:
    _, events = _replay(tmp_path, "ts,customer_id\n1700000000,a\n")
    assert events[1][2]["ts"] == 1_700_000_000.0
    assert events[1][2]["customer_id"] == "a"


def test_no_time_column_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(CsvReplayError, match=r"no time column found in raw\.csv: pass --time-col"):
        _replay(tmp_path, "a,b\n1,2\n")


def test_a_label_like_column_that_is_not_0_1_is_not_taken(tmp_path: Path) -> None:
    replay, events = _replay(tmp_path, "ts,class\n1700000000,gold\n")
    assert "label" not in events[1][2]
    assert "label: none (rows are unlabelled); pass --label-col" in replay.notes
