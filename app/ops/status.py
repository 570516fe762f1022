"""``fedstream status``: one JSON document about a running deployment, read from Kafka.

Everything comes from the broker, so it works from any machine with access to the cluster:
the catalogue's topics, the worker group's lag per input partition, what each silo has not
trained on yet (its Flower client's consumer group), dead letters, rates, the newest
federated round (``fl.metrics``) and the model version the worker scored its latest rows
with (the newest ``features.enriched`` records say it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from app.features.frames import decode_batch
from app.fl.kafka_io import silo_group
from app.ops.offsets import KafkaReader, PartitionLag
from app.settings import Settings
from topics import (
    CHATBOT_REQUESTS,
    CUSTOMERS,
    FEATURES_ENRICHED,
    FL_METRICS,
    TRANSACTIONS,
    WORKER_APP_ID,
    catalogue,
    namespaced,
    silo_batches,
)

__all__ = ["FRAME_SCAN_LIMIT", "Sample", "collect_status", "drained", "take_sample"]

logger = logging.getLogger(__name__)

FRAME_SCAN_LIMIT = 200
"""Waiting frames whose row counts are read exactly; beyond that rows are estimated."""

METRICS_LOOKBACK = 20
"""Newest fl.metrics records searched for the model's latest round."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Input end offsets and the worker's committed offsets at one moment (for rates)."""

    at: float
    produced: int
    processed: int


def _inputs(ns: str) -> list[str]:
    return [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]


def _worker_group(ns: str) -> str:
    return namespaced(WORKER_APP_ID, ns)


def take_sample(reader: KafkaReader, settings: Settings) -> tuple[Sample, list[PartitionLag]]:
    """The worker group's lag on the inputs, and the sums a rate is computed from."""
    ns = settings.namespace
    lags = reader.lags(_worker_group(ns), reader.partitions(), _inputs(ns))
    produced = sum(p.end for p in lags)
    processed = sum(p.end - p.lag for p in lags)
    return Sample(time.monotonic(), produced, processed), lags


def drained(lags: list[PartitionLag]) -> bool:
    """Every input record is processed and committed by the worker group."""
    return all(p.lag == 0 for p in lags)


def _silo_waiting(
    reader: KafkaReader, settings: Settings, partitions: dict[str, int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for silo in settings.silo_ids:
        topic = namespaced(silo_batches(silo), settings.namespace)
        group = silo_group(settings.model_name, silo)
        lags = reader.lags(group, partitions, [topic])
        frames = sum(p.lag for p in lags)
        rows, estimated = 0, False
        for p in lags:
            start = p.end - p.lag
            scan_from = max(start, p.end - FRAME_SCAN_LIMIT)
            counts = [
                _rows_of(m.value()) for m in reader.read(topic, p.partition, scan_from, p.end)
            ]
            if counts and scan_from > start:  # too many to read: average of the newest
                rows += round(sum(counts) / len(counts) * p.lag)
                estimated = True
            else:
                rows += sum(counts)
        out[str(silo)] = {"topic": topic, "group": group, "frames_waiting": frames,
                          "rows_waiting": rows, "rows_estimated": estimated}  # fmt: skip
    return out


def _rows_of(value: bytes | None) -> int:
    try:
        return decode_batch(value or b"").meta.rows
    except ValueError:
        return 0


def _newest_json(
    reader: KafkaReader, topic: str, partitions: int, lookback: int
) -> list[dict[str, Any]]:
    """The newest ``lookback`` JSON records of each partition of ``topic``, oldest first."""
    tps = [(topic, p) for p in range(partitions)]
    docs: list[tuple[int, dict[str, Any]]] = []
    for (t, p), (start, end) in reader.offsets(tps).items():
        for msg in reader.read(t, p, max(start, end - lookback), end):
            try:
                doc = orjson.loads(msg.value() or b"")
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                docs.append((msg.timestamp()[1], {**doc, "_key": msg.key()}))
    return [doc for _ts, doc in sorted(docs, key=lambda item: item[0])]


def _model(reader: KafkaReader, topic: str, partitions: int) -> dict[str, Any] | None:
    """Round and version of the model the worker scored its newest enriched rows with."""
    docs = _newest_json(reader, topic, partitions, lookback=1)
    if not docs:
        return None
    newest = docs[-1]
    return {"round": newest.get("model_round"), "version": newest.get("model_version")}


def _federated(reader: KafkaReader, settings: Settings, partitions: int) -> dict[str, Any] | None:
    """The newest round of the model on fl.metrics; fields a server does not send are null."""
    topic = namespaced(FL_METRICS, settings.namespace)
    key = settings.model_name.encode()
    docs = [d for d in _newest_json(reader, topic, partitions, METRICS_LOOKBACK)
            if d.pop("_key") == key]  # fmt: skip
    if not docs:
        return None
    doc = docs[-1]
    silos = doc.get("silos") or {}
    return {
        "round": doc.get("round"),
        "time": doc.get("time"),
        "model_version": doc.get("model_version"),
        "round_seconds": doc.get("round_seconds"),
        "global": doc.get("global"),
        "silos": {s: (v or {}).get("roc_auc") for s, v in silos.items()},
        "silo_rows": {
            s: {"read": (v or {}).get("rows"), "trained": (v or {}).get("examples")}
            for s, v in silos.items()
        },
        "participation": doc.get("participation"),
        "idle_silos": doc.get("idle_silos"),
        "whole_run": doc.get("whole_run"),
    }


def collect_status(
    reader: KafkaReader, settings: Settings, before: Sample | None = None
) -> tuple[dict[str, Any], Sample]:
    """The status document, and the sample the next call's rates start from.

    With ``before`` (an earlier :func:`take_sample`) the document has events/s since then.
    """
    ns = settings.namespace
    partitions = reader.partitions()
    brokers = len(reader.admin.list_topics(timeout=reader.timeout_s).brokers)
    specs = catalogue(settings.silo_ids, settings.input_partitions, ns)
    missing = [s.name for s in specs if s.name not in partitions]
    wrong = [s.name for s in specs if s.name in partitions and partitions[s.name] < s.partitions]
    sample, lags = take_sample(reader, settings)
    group = _worker_group(ns)
    chat_topic = namespaced(CHATBOT_REQUESTS, ns)
    chat_lags = reader.lags(f"{group}-chat", partitions, [chat_topic])
    rates = None
    if before is not None and sample.at > before.at:
        dt = sample.at - before.at
        rates = {"interval_s": round(dt, 2),
                 "produced": round((sample.produced - before.produced) / dt, 1),
                 "processed": round((sample.processed - before.processed) / dt, 1)}  # fmt: skip
    dlq_topics = [s.name for s in specs if s.name.startswith(namespaced("dlq.", ns))]
    dlq_tps = [(t, p) for t in dlq_topics for p in range(partitions.get(t, 0))]
    dlq: dict[str, int] = dict.fromkeys(dlq_topics, 0)
    for (t, _p), (start, end) in reader.offsets(dlq_tps).items():
        dlq[t] += end - start
    enriched = namespaced(FEATURES_ENRICHED, ns)
    doc = {
        "time": time.time(),
        "bootstrap": settings.bootstrap,
        "namespace": ns,
        "brokers": brokers,
        "catalogue": {"topics": len(specs), "missing": missing, "too_few_partitions": wrong},
        "worker": {
            "group": group,
            "members": reader.members(group),
            "lag": sum(p.lag for p in lags),
            "drained": drained(lags),
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "end": p.end,
                    "committed": p.committed,
                    "lag": p.lag,
                }
                for p in lags
            ],
        },
        "chatbot": {"group": f"{group}-chat", "lag": sum(p.lag for p in chat_lags)},
        "events_per_s": rates,
        "silos": _silo_waiting(reader, settings, partitions),
        "dlq": dlq,
        "model": _model(reader, enriched, partitions.get(enriched, 0)),
        "federated": _federated(reader, settings, partitions.get(namespaced(FL_METRICS, ns), 0)),
    }
    return doc, sample
