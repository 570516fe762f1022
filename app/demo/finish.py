"""The end of the demo: centralised baseline, latencies, plot and ``report.md``."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import TopicPartition
from rich.console import Console

from app.demo.report import latency_percentiles, plot_auc, write_markdown
from app.kafka.clients import make_consumer
from app.settings import Settings
from topics import FEATURES_ENRICHED

__all__ = ["enriched_latencies", "write_report"]

logger = logging.getLogger(__name__)


def enriched_latencies(bootstrap: str, last_n: int = 50_000) -> list[float]:
    """Event-to-enriched latency (ms) of the newest ``last_n`` enriched records.

    The latency is ``enriched_ms`` (when the worker built the record) minus ``source_ms``
    (the input transaction's Kafka timestamp, i.e. when the bank system produced it).
    """
    consumer = make_consumer(bootstrap, f"fedstream-demo-lat-{uuid.uuid4().hex[:8]}")
    try:
        meta = consumer.list_topics(FEATURES_ENRICHED, timeout=10).topics[FEATURES_ENRICHED]
        parts, ends = [], {}
        per = max(1, last_n // max(len(meta.partitions), 1))
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(FEATURES_ENRICHED, p), 10)
            if high > low:
                parts.append(TopicPartition(FEATURES_ENRICHED, p, max(low, high - per)))
                ends[p] = high
        consumer.assign(parts)
        out: list[float] = []
        while ends:
            msgs = consumer.consume(5000, 2.0)
            if not msgs:
                break
            for msg in msgs:
                if msg.error() is not None:
                    continue
                doc = orjson.loads(msg.value() or b"{}")
                if doc.get("source_ms") and doc.get("enriched_ms"):
                    out.append(float(doc["enriched_ms"] - doc["source_ms"]))
                if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                    ends.pop(msg.partition() or 0, None)
        return out
    finally:
        consumer.close()


def write_report(
    out_dir: Path,
    settings: Settings,
    run_config: dict[str, Any],
    summary: dict[str, Any],
    rounds: list[dict[str, Any]],
    chats: list[dict[str, Any]],
    console: Console,
    wall_s: float,
) -> Path:
    """Compute the baseline and latencies, write ``auc.png`` and ``report.md``."""
    from app.fl.baseline import read_silo_frames, rounds_rows_from_metrics, run_baseline
    from app.fl.config import FLConfig
    from app.fl.server_app import resolve_spec

    out_dir.mkdir(parents=True, exist_ok=True)
    console.print("computing the centralised baseline on the same batches...")
    cfg = FLConfig.from_run_config({**run_config, "bootstrap": settings.bootstrap})
    spec_version, n_features = resolve_spec(cfg)
    frames = [
        read_silo_frames(settings.bootstrap, s, spec_version, n_features) for s in settings.silo_ids
    ]
    # the federated run's rounds and rows: the baseline's figures compare like with like
    baseline = (
        run_baseline(
            frames,
            cfg,
            n_features,
            silo_ids=settings.silo_ids,
            rounds_rows=rounds_rows_from_metrics(rounds) or None,
        )
        if any(frames)
        else None
    )
    overall = baseline.overall.roc_auc() if baseline and baseline.overall else None
    summary["event-to-enriched latency (ms)"] = latency_percentiles(
        enriched_latencies(settings.bootstrap)
    )
    summary["chatbot round trip (ms)"] = latency_percentiles([c["latency_ms"] for c in chats])
    whole = ((rounds[-1].get("whole_run") or {}).get("global") or {}) if rounds else {}
    summary["federated whole-run prequential ROC AUC"] = whole.get("roc_auc")
    summary["centralised whole-run prequential ROC AUC (same rows and rounds)"] = overall
    summary["federated whole-run PR AUC"] = whole.get("pr_auc")
    summary["centralised whole-run PR AUC"] = (
        baseline.overall.pr_auc() if baseline and baseline.overall else None
    )
    if rounds:
        summary["last round's global prequential ROC AUC"] = (rounds[-1].get("global") or {}).get(
            "roc_auc"
        )
    summary["demo wall seconds (until the report)"] = round(wall_s, 1)
    options = summary.pop("options", {})
    plot = plot_auc(
        out_dir / "auc.png",
        rounds,
        baseline.rounds if baseline else [],
        overall,
        federated_overall=whole.get("roc_auc"),
    )
    md = write_markdown(
        out_dir / "report.md",
        {**summary, "options": options},
        rounds,
        baseline.lines() if baseline else ["no batches"],
        chats,
        plot.name,
    )
    (out_dir / "rounds.json").write_bytes(orjson.dumps(rounds, option=orjson.OPT_INDENT_2))
    console.print(f"report written: {md} and {plot}")
    return out_dir
