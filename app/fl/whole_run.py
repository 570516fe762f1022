"""Whole-run prequential metrics: every round since the model started, global and per silo.

Per-silo histograms add up round by round (global = their merge, never an average of
AUCs). The server puts the summary into every ``fl.metrics`` document (``whole_run``) and
the histograms themselves, sparse, into the model frame's metadata, so a restarted
server that resumes from ``fl.model.global`` continues the same whole-run figures.
Pure code (no flwr, no Kafka).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from app.fl.rounds import SiloEvaluation, summary_of
from app.model.metrics import ScoreHistogram, merge_histograms

__all__ = ["META_KEY", "WholeRun"]

logger = logging.getLogger(__name__)

META_KEY = "whole_run_histograms"
"""Key of the sparse per-silo histograms in a model frame's ``metrics``."""


class WholeRun:
    """Accumulated prequential histograms and row counts per silo."""

    def __init__(
        self,
        histograms: Mapping[int, ScoreHistogram] | None = None,
        rows: Mapping[int, int] | None = None,
        rounds: int = 0,
    ) -> None:
        self.histograms: dict[int, ScoreHistogram] = dict(histograms or {})
        self.rows: dict[int, int] = dict(rows or {})
        self.rounds = rounds

    def add(self, evaluations: Sequence[SiloEvaluation]) -> None:
        """Add one round's silo evaluations (replies with rows)."""
        for e in evaluations:
            prev = self.histograms.get(e.silo)
            self.histograms[e.silo] = e.histogram if prev is None else prev.merge(e.histogram)
            self.rows[e.silo] = self.rows.get(e.silo, 0) + int(e.rows)
        self.rounds += 1

    def merged(self) -> ScoreHistogram | None:
        """The global whole-run histogram (None before the first round)."""
        return merge_histograms(self.histograms.values()) if self.histograms else None

    def summary(self) -> dict[str, Any]:
        """``{"rounds", "global", "silos"}``: AUCs, log loss, rows, labelled, positives."""
        merged = self.merged()
        return {
            "rounds": self.rounds,
            "global": summary_of(merged, sum(self.rows.values())) if merged else None,
            "silos": {
                str(s): summary_of(h, self.rows.get(s, 0))
                for s, h in sorted(self.histograms.items())
            },
        }

    def to_meta(self) -> dict[str, Any]:
        """Sparse histograms for the model frame (see :data:`META_KEY`)."""
        return {
            "rounds": self.rounds,
            "silos": {
                str(s): {"rows": self.rows.get(s, 0), "histogram": h.to_sparse()}
                for s, h in self.histograms.items()
            },
        }

    @classmethod
    def from_meta(cls, raw: Any) -> WholeRun:
        """Inverse of :meth:`to_meta`; an absent or unreadable entry starts afresh."""
        if not isinstance(raw, Mapping):
            return cls()
        try:
            hists, rows = {}, {}
            for key, entry in dict(raw.get("silos") or {}).items():
                hists[int(key)] = ScoreHistogram.from_sparse(entry["histogram"])
                rows[int(key)] = int(entry.get("rows", 0))
            return cls(hists, rows, int(raw.get("rounds", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("whole-run histograms of the resumed model are unreadable: %s", exc)
            return cls()
