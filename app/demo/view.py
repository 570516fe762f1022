"""The demo's live view: one rich table per refresh."""

from __future__ import annotations

import logging
from typing import Any

from rich.table import Table

from app.demo.monitor import Snapshot

__all__ = ["render_snapshot"]

logger = logging.getLogger(__name__)


def _auc(doc: Any) -> str:
    value = doc.get("roc_auc") if isinstance(doc, dict) else None
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def render_snapshot(snap: Snapshot, options: Any, worker: str | None = None) -> Table:
    """Throughput, the worker's liveness (``worker``: app.supervise.Supervised.describe),
    batches per silo, current round, global and per-silo prequential AUC."""
    limit = f" / {options.rounds}" if options.rounds else ""
    table = Table(
        title=f"fedstream demo: {snap.elapsed_s:.0f} s of {options.duration_s:.0f} s",
        title_justify="left",
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("transactions produced", f"{snap.transactions:,} ({snap.produced_per_s:,.0f}/s)")
    table.add_row("enriched by the worker", f"{snap.enriched:,} ({snap.enriched_per_s:,.0f}/s)")
    if worker is not None:
        table.add_row("stream worker", worker)
    for silo, n in sorted(snap.batches.items()):
        table.add_row(f"batches of silo {silo}", f"{n:,}")
    table.add_row("federated round", f"{snap.round}{limit}")
    if snap.rounds:
        last = snap.rounds[-1]
        table.add_row("global prequential ROC AUC", _auc(last.get("global")))
        for silo, doc in sorted((last.get("silos") or {}).items()):
            table.add_row(f"  silo {silo} ROC AUC", _auc(doc))
        table.add_row("model version", str(last.get("model_version")))
        history = " ".join(_auc(r.get("global")) for r in snap.rounds[-8:])
        table.add_row("global AUC, last rounds", history)
    else:
        table.add_row("global prequential ROC AUC", "waiting for the first round")
    return table
