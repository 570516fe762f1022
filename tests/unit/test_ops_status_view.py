"""The text of ``fedstream status`` from a status document (no broker)."""

from __future__ import annotations

from typing import Any

from app.ops.offsets import PartitionLag
from app.ops.status_view import status_lines


def _doc(federated: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "bootstrap": "h:1", "brokers": 1, "namespace": "",
        "catalogue": {"topics": 13, "missing": ["fl.metrics"], "too_few_partitions": []},
        "worker": {"group": "fedstream-worker", "members": 2, "lag": 5, "drained": False,
                   "partitions": [{"topic": "bank.transactions", "partition": 0, "end": 10,
                                   "committed": 5, "lag": 5}]},
        "chatbot": {"lag": 0}, "events_per_s": {"processed": 10.0, "produced": 12.0},
        "silos": {"0": {"frames_waiting": 2, "rows_waiting": 512, "rows_estimated": True}},
        "dlq": {"dlq.bank.transactions": 3}, "model": {"round": 4, "version": "4-ab"},
        "federated": federated,
    }  # fmt: skip


def test_status_lines_tolerate_an_older_round_document() -> None:
    # Prepare: a round document without participation or whole-run fields
    old = {"round": 3, "model_version": "3-x", "global": {"roc_auc": 0.7}, "silos": {"0": 0.7}}

    # Execute
    text = "\n".join(status_lines(_doc(old)))

    # Assert
    assert "lag 5 (behind); 10 events/s processed, 12 produced" in text
    assert "bank.transactions: p0 5 (5/10)" in text
    assert "missing fl.metrics" in text and "silo 0: 2 frames, ~512 rows" in text
    assert "dlq.bank.transactions 3" in text and "round 4 (4-ab)" in text
    assert "round 3 (3-x): ROC AUC 0.700" in text and "1 of 1 silos trained" in text
    assert "whole run" not in text


def test_status_lines_without_rounds_and_lag_of_uncommitted_partitions() -> None:
    assert "no round published yet" in "\n".join(status_lines(_doc(None)))
    never = PartitionLag("t", 0, start=3, end=10, committed=None)
    assert never.lag == 7 and PartitionLag("t", 0, 3, 10, 1).lag == 7
