"""Centralised baseline (pure part) and the fail-fast CLI of federated training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from app.fl.baseline import plan_rounds, rounds_rows_from_metrics, run_baseline
from app.fl.cli import fl_app
from app.fl.config import FLConfig
from app.fl.synthetic import learnable_rows


def _chunks(rows: list[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [learnable_rows(rng, n) for n in rows]


def test_rounds_pool_whole_frames_like_the_clients_read_them() -> None:
    # Prepare: silo 0 frames of 400, 400, 400 rows; silo 1 one frame of 900 rows
    frames = [_chunks([400, 400, 400], 0), _chunks([900], 1)]

    # Execute: at most 1000 rows per silo and round
    rounds = plan_rounds(frames, max_rows=1000)

    # Assert: round 1 = 800 + 900 rows, round 2 = 400 (silo 1 has nothing left)
    assert [x.shape[0] for x, _ in rounds] == [1700, 400]
    assert np.array_equal(rounds[0][0][:400], frames[0][0][0])
    assert np.array_equal(rounds[0][0][800:], frames[1][0][0])


def test_baseline_prequential_auc_rises() -> None:
    frames = [_chunks([500] * 8, 2), _chunks([500] * 8, 3)]
    cfg = FLConfig(max_rows_per_round=1000, local_epochs=3, lr=0.01, batch_size=64, hidden=(16,))
    report = run_baseline(frames, cfg, n_features=8)
    aucs = [r["roc_auc"] for r in report.rounds]
    assert len(aucs) == 4
    assert aucs[-1] is not None and aucs[-1] > 0.8
    assert report.overall is not None and report.overall.count == 8000
    assert report.lines()[-3].startswith("overall: rows 8000")
    assert report.lines()[-1].startswith("  silo 1: rows 4000")
    assert sum(h.count for h in report.silos.values()) == 8000


def test_baseline_replays_the_federated_rounds_on_the_same_rows() -> None:
    # Prepare: fl.metrics of a federated run that read 500+500, then 1000 of silo 7 only
    frames = [_chunks([500] * 4, 4), _chunks([500] * 4, 5)]
    docs = [
        {"round": 1, "participation": {"rows": {"6": 500, "7": 500}}},
        {"round": 2, "participation": {"rows": {"6": 0, "7": 1000}}},
        {"round": 2, "participation": {"rows": {"6": 0, "7": 1000}}},  # published twice
    ]
    cfg = FLConfig(local_steps=20, lr=0.01, batch_size=64, hidden=(16,))

    # Execute
    report = run_baseline(
        frames, cfg, 8, silo_ids=[6, 7], rounds_rows=rounds_rows_from_metrics(docs)
    )

    # Assert: exactly the rows the federated run scored, round by round and per silo
    assert [r["rows"] for r in report.rounds] == [1000, 1000]
    assert {s: h.count for s, h in report.silos.items()} == {6: 500, 7: 1500}
    assert report.same_rows_as_federated and "federated run's rounds" in report.lines()[2]


def test_fl_up_fails_fast_on_unknown_strategy(tmp_path: Path) -> None:
    # Prepare
    root = typer.Typer()
    root.add_typer(fl_app, name="fl")

    @root.callback()
    def _cb(ctx: typer.Context) -> None:
        ctx.obj = {"data_dir": tmp_path, "bootstrap_servers": "127.0.0.1:1"}

    # Execute
    result = CliRunner().invoke(root, ["fl", "up", "--silos", "2", "-c", "strategy='fedsgd'"])

    # Assert: exit 1 with one sentence, nothing started
    assert result.exit_code == 1
    assert "unknown strategy 'fedsgd'" in result.output
    assert not (tmp_path / "fl" / "state.json").exists()
