"""The stream worker's Prometheus hooks: what the agents count, and a lag/model sampler.

The agents call the small functions here (one counter per input topic bound once, so an
event costs one ``inc``); a Faust timer samples lag and the model round every few seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app.ops import metrics

__all__ = ["SAMPLE_INTERVAL_S", "WorkerMetrics"]

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0


class WorkerMetrics:
    """Counters of one worker; ``sample`` is its periodic lag and model-round reading."""

    def __init__(self, input_topics: list[str]) -> None:
        self.inputs = set(input_topics)
        self._events = {t: metrics.EVENTS.labels(topic=t) for t in input_topics}

    def event(self, topic: str) -> None:
        counter = self._events.get(topic)
        if counter is None:
            counter = self._events[topic] = metrics.EVENTS.labels(topic=topic)
        counter.inc()

    @staticmethod
    def dead_letter(topic: str, reason: str) -> None:
        metrics.dead_letter(topic, reason)

    @staticmethod
    def enriched(kafka_timestamp_s: float | None) -> None:
        """A transaction became an enriched record now (latency from its Kafka timestamp)."""
        if kafka_timestamp_s:
            metrics.ENRICH_LATENCY.observe(max(0.0, time.time() - kafka_timestamp_s))

    @staticmethod
    def chat_answered(kafka_timestamp_ms: int | None) -> None:
        if kafka_timestamp_ms and kafka_timestamp_ms > 0:
            metrics.CHAT_LATENCY.observe(max(0.0, time.time() - kafka_timestamp_ms / 1000))

    @staticmethod
    def committed(seconds: float) -> None:
        metrics.COMMIT_SECONDS.observe(seconds)

    def sample(self, consumer: Any, positions: dict[Any, int], model_round: int | None) -> None:
        """Lag per assigned input partition (end minus next offset to process)."""
        metrics.MODEL_ROUND.set(-1 if model_round is None else model_round)
        for tp in consumer.assignment():
            if tp.topic not in self.inputs:  # table changelogs, Faust's own topics
                continue
            try:
                end = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            if end is None or end < 0:
                continue
            position = positions.get(tp)
            lag = end if position is None else max(0, end - position)
            metrics.LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
