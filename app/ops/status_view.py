"""The one-screen text of ``fedstream status`` (plain lines, no markup)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["status_lines"]


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _figures(doc: dict[str, Any] | None) -> str:
    if not doc:
        return "n/a"
    return (f"ROC AUC {_num(doc.get('roc_auc'))}, PR AUC {_num(doc.get('pr_auc'))}, "
            f"{_num(doc.get('rows'))} rows")  # fmt: skip


def _lag_line(parts: list[dict[str, Any]]) -> list[str]:
    by_topic: dict[str, list[str]] = {}
    for p in parts:
        committed = "-" if p["committed"] is None else f"{p['committed']:,}"
        by_topic.setdefault(p["topic"], []).append(
            f"p{p['partition']} {p['lag']:,} ({committed}/{p['end']:,})"
        )
    return [f"  {topic}: " + ", ".join(cells) for topic, cells in by_topic.items()]


def _federated(fl: dict[str, Any] | None) -> list[str]:
    if fl is None:
        return ["federated   no round published yet"]
    part = fl.get("participation") or {}
    silos = fl.get("silos") or {}
    trained = part.get("trained", len(silos))
    replied = part.get("replied", len(silos) + len(fl.get("idle_silos") or []))
    age = time.time() - fl["time"] if isinstance(fl.get("time"), int | float) else None
    lines = [
        f"federated   round {fl.get('round')} ({fl.get('model_version')}): "
        f"{_figures(fl.get('global'))}; {trained} of {replied} silos trained; "
        f"{_num(fl.get('round_seconds'), 1)} s" + (f", {age:,.0f} s ago" if age is not None else "")
    ]
    whole = fl.get("whole_run")
    if isinstance(whole, dict):
        lines.append(f"  whole run ({whole.get('rounds')} rounds): {_figures(whole.get('global'))}")
    return lines


def status_lines(doc: dict[str, Any]) -> list[str]:
    """``fedstream status`` as text: one screen, most important first."""
    w = doc["worker"]
    cat = doc["catalogue"]
    problems = []
    if cat["missing"]:
        problems.append(f"missing {', '.join(cat['missing'])}")
    if cat["too_few_partitions"]:
        problems.append(f"too few partitions: {', '.join(cat['too_few_partitions'])}")
    rates = doc.get("events_per_s")
    rate_text = (f"; {rates['processed']:,.0f} events/s processed, "
                 f"{rates['produced']:,.0f} produced" if rates else "")  # fmt: skip
    state = "drained" if w["drained"] else "behind"
    lines = [
        f"broker      {doc['bootstrap']} ({doc['brokers']} broker(s))"
        + (f", namespace {doc['namespace']}" if doc.get("namespace") else ""),
        f"catalogue   {cat['topics']} topics: "
        + ("; ".join(problems) if problems else "all present"),
        f"worker      group {w['group']}, {w['members']} member(s), lag {w['lag']:,} ({state})"
        + rate_text,
        *_lag_line(w["partitions"]),
        f"chatbot     requests waiting {doc['chatbot']['lag']:,}",
    ]
    silos = [
        f"silo {s}: {v['frames_waiting']:,} frames, {'~' if v['rows_estimated'] else ''}"
        f"{v['rows_waiting']:,} rows"
        for s, v in doc["silos"].items()
    ]
    lines.append("waiting     " + ("; ".join(silos) if silos else "no silos"))
    lines.append("dead letters " + ", ".join(f"{t} {n:,}" for t, n in doc["dlq"].items()))
    model = doc.get("model")
    lines.append(
        "model       the worker scores with "
        + (
            "no model yet"
            if not model or model.get("version") is None
            else f"round {model.get('round')} ({model.get('version')})"
        )
    )
    lines += _federated(doc.get("federated"))
    return lines
