"""What ``fedstream fl status`` prints about the rounds: whole-run figures, then the latest
round and its privacy account (from the newest ``fl.metrics`` document)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["status_lines"]

logger = logging.getLogger(__name__)


def _fig(doc: dict[str, Any] | None) -> str:
    if not doc:
        return "n/a"

    def f(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, int | float) else "n/a"

    return (
        f"ROC AUC {f(doc.get('roc_auc'))}, PR AUC {f(doc.get('pr_auc'))}, "
        f"{doc.get('labelled')} labelled rows ({doc.get('positives')} positive)"
    )


def status_lines(latest: dict[str, Any]) -> list[str]:
    """What ``fl status`` prints first: whole-run figures, then the latest round."""
    whole = latest.get("whole_run") or {}
    lines = [
        f"whole run ({whole.get('rounds', '?')} rounds, prequential): {_fig(whole.get('global'))}"
    ]
    for silo, doc in (whole.get("silos") or {}).items():
        lines.append(f"  silo {silo}: {_fig(doc)}")
    part = latest.get("participation") or {}
    lines.append(
        f"latest round {latest['round']} ({latest.get('model_version')}): "
        f"{_fig(latest.get('global'))}; {part.get('trained', '?')} of {part.get('replied', '?')}"
        f" silos trained, {latest.get('round_seconds')} s"
    )
    if dp := latest.get("privacy"):
        limit = f" of max {dp['max_epsilon']:g}" if dp.get("max_epsilon") else ""
        lines.append(
            f"privacy: epsilon {dp['epsilon']:.3f}{limit} at delta {dp['delta']:g} after "
            f"{dp['releases']} DP rounds ({dp['guarantee']})"
        )
    return lines
