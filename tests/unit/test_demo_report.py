"""The demo report: plot and Markdown from round metrics (no broker)."""

from pathlib import Path

from app.demo.report import auc_figure, latency_percentiles, plot_auc, write_markdown


def _round(r: int, auc: float) -> dict:  # type: ignore[type-arg]
    return {"round": r, "model_version": f"{r}-abc", "round_seconds": 9.5,
            "global": {"roc_auc": auc, "rows": 1000},
            "participation": {"trained": 2, "replied": 2},
            "silos": {"0": {"roc_auc": auc - 0.05}, "1": {"roc_auc": None}}}  # fmt: skip


def test_report_files(tmp_path: Path) -> None:
    # Prepare
    rounds = [_round(1, 0.6), _round(2, 0.8)]
    baseline = [{"round": 1, "roc_auc": 0.7}, {"round": 2, "roc_auc": 0.85}]
    chats = [{"customer_id": "c1", "question": "risk?", "answer": "low", "latency_ms": 12.0}]
    summary = {"silos": 2, "fresh": True, "latency (ms)": latency_percentiles([1.0, 2.0, 30.0])}

    # Execute
    png = plot_auc(tmp_path / "auc.png", rounds, baseline, 0.82)
    md = write_markdown(tmp_path / "report.md", summary, rounds, ["overall 0.82"], chats, png.name)

    # Assert
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "![prequential ROC AUC](auc.png)" in text
    assert "| 2 | 2-abc | 1,000 | 2 of 2 | 0.800 | 0: 0.750, 1: n/a | 9.5 |" in text
    assert "| fresh | yes |" in text and "> low" in text and "overall 0.82" in text


def test_latency_percentiles() -> None:
    assert latency_percentiles([])["p99"] is None
    stats = latency_percentiles(list(range(1, 101)))
    assert stats["n"] == 100 and stats["max"] == 100 and 49 <= stats["p50"] <= 51


def test_plot_integer_rounds_and_silo_points_on_top() -> None:
    # Prepare: a short run (2 rounds) made matplotlib tick 1.25, 1.5, ...
    rounds = [_round(1, 0.6), _round(2, 0.8)]

    # Execute
    fig = auc_figure(rounds)

    # Assert
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["silo 0"].get_zorder() > lines["federated (global)"].get_zorder()
    assert lines["silo 0"].get_marker() not in ("", "None", None)


def test_report_shows_epsilon_when_rounds_spent_privacy(tmp_path: Path) -> None:
    rounds = [_round(1, 0.6), _round(2, 0.8)]
    rounds[1]["privacy"] = {"epsilon": 7.0774, "delta": 1e-05, "releases": 2}
    rounds[0]["privacy"] = {"epsilon": 4.7285, "delta": 1e-05, "releases": 1}

    text = write_markdown(tmp_path / "r.md", {}, rounds, [], [], "auc.png").read_text()

    assert "| seconds | epsilon (delta) |" in text
    assert "| 9.5 | 7.08 (1e-05) |" in text
    plain = write_markdown(tmp_path / "p.md", {}, [_round(1, 0.6)], [], [], "a.png").read_text()
    assert "epsilon" not in plain
