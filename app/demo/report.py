"""The demo's report: a PNG of prequential ROC AUC per round and a Markdown summary."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["auc_figure", "latency_percentiles", "plot_auc", "write_markdown"]

logger = logging.getLogger(__name__)


def latency_percentiles(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``p50``, ``p95``, ``p99``, ``max`` of latencies in ms (None when empty)."""
    if not values_ms:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
    }


def _auc(doc: dict[str, Any] | None) -> float:
    value = None if doc is None else doc.get("roc_auc")
    return float(value) if isinstance(value, int | float) else math.nan


def plot_auc(
    path: Path,
    rounds: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]] = (),
    baseline_overall: float | None = None,
    title: str = "Prequential ROC AUC per round",
    federated_overall: float | None = None,
) -> Path:
    """Global and per-silo prequential ROC AUC of each round, with the centralised baseline.

    The baseline replays the federated rounds (same rows), so each round's points and
    the two whole-run lines compare like with like.
    """
    import matplotlib.pyplot as plt

    fig = auc_figure(rounds, baseline, baseline_overall, title, federated_overall)
    fig.savefig(path)
    plt.close(fig)
    return path


def auc_figure(
    rounds: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]] = (),
    baseline_overall: float | None = None,
    title: str = "Prequential ROC AUC per round",
    federated_overall: float | None = None,
) -> Any:
    """The matplotlib figure of :func:`plot_auc` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    xs = [int(r["round"]) for r in rounds]
    silos = sorted({s for r in rounds for s in (r.get("silos") or {})}, key=int)
    ax.plot(
        xs,
        [_auc(r.get("global")) for r in rounds],
        marker="o",
        linewidth=2.5,
        color="black",
        label="federated (global)",
        zorder=2,
    )
    # Drawn after (and above) the global line with hollow markers, so a silo's point is
    # visible even where it equals the global value.
    markers = "sD^vP*X"
    for i, silo in enumerate(silos):
        ys = [_auc((r.get("silos") or {}).get(silo)) for r in rounds]
        ax.plot(xs, ys, marker=markers[i % len(markers)], markersize=6, markerfacecolor="none",
                linewidth=1, alpha=0.9, label=f"silo {silo}", zorder=3)  # fmt: skip
    if baseline:
        ax.plot(
            [int(b["round"]) for b in baseline],
            [_auc(b) for b in baseline],
            linestyle="--",
            color="tab:red",
            label="centralised baseline",
        )
    if baseline_overall is not None and math.isfinite(baseline_overall):
        ax.axhline(
            baseline_overall,
            linestyle=":",
            color="tab:red",
            alpha=0.6,
            label=f"centralised whole run {baseline_overall:.3f}",
        )
    if federated_overall is not None and math.isfinite(federated_overall):
        ax.axhline(
            federated_overall,
            linestyle=":",
            color="black",
            alpha=0.6,
            label=f"federated whole run {federated_overall:.3f}",
        )
    ax.axhline(0.5, color="grey", linewidth=0.8, alpha=0.5)
    ax.set_xlabel("round (each row scored before it is trained on)")
    ax.set_ylabel("prequential ROC AUC")
    ax.set_title(title)
    ax.set_ylim(0.0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_markdown(
    path: Path,
    summary: dict[str, Any],
    rounds: Sequence[dict[str, Any]],
    baseline_lines: Sequence[str],
    chats: Sequence[dict[str, Any]],
    plot_name: str,
) -> Path:
    """``report.md``: configuration, throughput, latencies, rounds, baseline, chatbot."""
    lines = ["# fedstream demo report", "", f"![prequential ROC AUC]({plot_name})", ""]
    lines += ["## Run", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items() if not isinstance(v, dict)]
    for name, block in summary.items():
        if isinstance(block, dict):
            lines += ["", f"### {name}", "", "| | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v, 1)} |" for k, v in block.items()]
    private = any(r.get("privacy") for r in rounds)
    lines += [
        "",
        "## Federated rounds",
        "",
        "| round | model | rows | silos trained | global ROC AUC | per-silo ROC AUC | seconds |"
        + (" epsilon (delta) |" if private else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if private else ""),
    ]
    for r in rounds:
        g = r.get("global") or {}
        silos = ", ".join(
            f"{s}: {_fmt(_auc(v))}" for s, v in sorted((r.get("silos") or {}).items())
        )
        part = r.get("participation") or {}
        trained = f"{part.get('trained', 'n/a')} of {part.get('replied', 'n/a')}"
        line = (
            f"| {r['round']} | {r.get('model_version')} | {_fmt(g.get('rows'))} | {trained} | "
            f"{_fmt(_auc(g))} | {silos} | {_fmt(r.get('round_seconds'), 1)} |"
        )
        if private:  # DP noise on: the epsilon spent up to this round
            dp = r.get("privacy") or {}
            line += f" {_fmt(dp.get('epsilon'), 2)} ({dp.get('delta')}) |" if dp else " - |"
        lines.append(line)
    lines += ["", "## Centralised baseline (all silos pooled, same model, prequential)", "", "```"]
    lines += [*baseline_lines, "```", "", "## Chatbot", ""]
    for chat in chats:
        lines.append(
            f"**{chat['customer_id']}**: _{chat['question']}_ "
            f"({_fmt(chat.get('latency_ms'), 1)} ms)  "
        )
        lines.append(f"> {chat['answer']}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path
