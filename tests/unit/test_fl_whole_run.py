"""Whole-run metrics: accumulate per silo, survive the model frame, lead `fl status`."""

from __future__ import annotations

import numpy as np

from app.fl.rounds import SiloEvaluation
from app.fl.status_text import status_lines
from app.fl.whole_run import WholeRun
from app.model.metrics import ScoreHistogram


def _eval(silo: int, seed: int, n: int = 2000) -> SiloEvaluation:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 2 * y - 3)))
    return SiloEvaluation(silo, n, n, ScoreHistogram.from_scores(scores, y))


def test_whole_run_accumulates_and_round_trips_through_meta() -> None:
    # Prepare
    rounds = [[_eval(0, 1), _eval(1, 2)], [_eval(0, 3)], [_eval(1, 4), _eval(2, 5)]]
    whole = WholeRun()

    # Execute
    for evaluations in rounds:
        whole.add(evaluations)
    back = WholeRun.from_meta(whole.to_meta())

    # Assert
    doc = whole.summary()
    assert doc["rounds"] == 3 and doc["global"]["rows"] == 10_000
    assert doc["silos"]["0"]["labelled"] == 4000 and set(doc["silos"]) == {"0", "1", "2"}
    assert back.summary() == doc
    merged = ScoreHistogram()
    for e in (e for r in rounds for e in r):
        merged = merged.merge(e.histogram)
    assert doc["global"]["roc_auc"] == merged.roc_auc()
    assert WholeRun.from_meta({"silos": {"0": {"histogram": {"n_bins": 3}}}}).rounds == 0


def test_status_leads_with_whole_run_figures() -> None:
    whole = WholeRun()
    whole.add([_eval(0, 1), _eval(1, 2)])
    latest = {
        "round": 7,
        "model_version": "7-abc",
        "global": {"roc_auc": 0.5, "labelled": 10, "positives": 1},
        "whole_run": whole.summary(),
        "participation": {"trained": 2, "replied": 3},
        "round_seconds": 1.5,
    }
    lines = status_lines(latest)
    assert lines[0].startswith("whole run (1 rounds, prequential): ROC AUC 0.")
    assert lines[1].startswith("  silo 0:") and "2 of 3 silos trained" in lines[-1]
