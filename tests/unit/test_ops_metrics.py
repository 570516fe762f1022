"""Metric helpers: dead-letter reason labels, round gauges from fl.metrics (no broker)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from app.ops import metrics
from app.ops.exporter import observe_round


def test_reason_labels_keep_the_kind_and_drop_the_data() -> None:
    assert metrics.reason_label("malformed JSON: unexpected character at 3") == "malformed JSON"
    assert metrics.reason_label("field 'amount': must be a finite number") == "field 'amount'"
    label = metrics.reason_label("key 'CUST-9 X' does not match customer_id 'c-1'")
    assert "CUST-9" not in label and label.startswith("key '…' does not match")
    assert metrics.reason_label("record too large: 2000000 bytes > 1048576") == "record too large"


def test_reason_labels_are_bounded() -> None:
    words = [chr(97 + i % 26) + chr(97 + i // 26) for i in range(200)]
    labels = {metrics.reason_label(f"weird reason {w}") for w in words}
    assert "other" in labels and len(labels) <= metrics.MAX_REASONS + 1


def test_round_gauges_from_a_round_document() -> None:
    # Execute: the same round twice (the exporter re-reads it), then one with fewer fields
    doc = {"round": 7, "model_version": "7-a", "round_seconds": 3.0,
           "global": {"roc_auc": 0.9}, "silos": {"0": 0.8, "1": None},
           "participation": {"trained": 1, "replied": 2}}  # fmt: skip
    before = REGISTRY.get_sample_value("fedstream_round_seconds_count") or 0.0
    observe_round(doc)
    observe_round(doc)
    observe_round({"round": 8, "silos": {"0": 0.7}, "idle_silos": [1]})

    # Assert
    assert REGISTRY.get_sample_value("fedstream_round_seconds_count") == before + 1
    assert REGISTRY.get_sample_value("fedstream_fl_round") == 8
    assert REGISTRY.get_sample_value("fedstream_prequential_roc_auc", {"scope": "global"}) == 0.9
    assert REGISTRY.get_sample_value("fedstream_prequential_roc_auc", {"scope": "silo 0"}) == 0.7
    assert REGISTRY.get_sample_value("fedstream_round_silos", {"state": "replied"}) == 2


def test_per_silo_rows_of_the_round_and_the_run() -> None:
    # Execute: a status document's federated part (round 3: silo 5 read 40 rows, trained 40)
    observe_round({"round": 3, "silos": {"5": 0.6, "6": None},
                   "silo_rows": {"5": {"read": 40, "trained": 40}, "6": {"read": 7, "trained": 0}},
                   "whole_run": {"silos": {"5": {"rows": 90}, "6": {"rows": 7}}}})  # fmt: skip

    # Assert
    get = REGISTRY.get_sample_value
    assert get("fedstream_round_silo_rows", {"silo": "5", "kind": "read"}) == 40
    assert get("fedstream_round_silo_rows", {"silo": "6", "kind": "trained"}) == 0
    assert get("fedstream_run_silo_rows", {"silo": "5"}) == 90
    assert get("fedstream_prequential_roc_auc", {"scope": "silo 6"}) is None  # no AUC: no gauge


def test_dashboard_and_scrape_config_name_real_metrics() -> None:
    import json
    import re
    from pathlib import Path

    import app.ops.exporter  # noqa: F401  (registers the exporter's gauges)

    docker = Path(__file__).resolve().parents[2] / "docker"
    dash = json.loads((docker / "grafana" / "fedstream-dashboard.json").read_text())
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in dash["panels"]
        for target in panel["targets"]
        for name in re.findall(r"fedstream_[a-z_]+", target["expr"])
    }
    registered = {m.name for m in REGISTRY.collect()}
    assert used and used <= registered, used - registered
    scrape = (docker / "prometheus.yml").read_text()
    compose = (docker / "compose.yaml").read_text()
    for port in ("9310", "9311", "9312"):
        assert port in scrape and port in compose
