"""Follow ``fl.model.global`` in a background thread; the worker swaps models between events.

Every worker needs every model, so the follower does not join the worker's consumer group:
it assigns all partitions of the (compacted) model topic itself, reads from the beginning
and keeps reading. Each frame of the configured model name is decoded and, if it fits the
worker's feature spec (same ``spec_version`` and width), turned into a :class:`LiveModel`
(the scorer of the module its frame names, :func:`app.model.scoring.frame_scorer`: the
NumPy MLP, a few µs per row, or the JAX forward of a pipeline's own module) and
published by a single reference assignment to :attr:`ModelFollower.latest`.

The thread never touches the stream: the Faust agent compares ``latest`` with the model it
uses before each event and installs the new one there (flushing the micro-batches scored
by the old model), so no event is dropped, processed twice or scored by a mix of models.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from app.kafka.clients import make_consumer
from app.model.frame import decode_model, silo_offsets_of
from app.model.scoring import Scorer, frame_scorer

__all__ = ["LiveModel", "ModelFollower", "load_live_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveModel:
    """A global model ready to score rows in the stream."""

    name: str
    version: str
    round: int
    spec_version: str
    created_ms: int
    received_ms: int
    scorer: Scorer
    metrics: dict[str, Any]
    silo_offsets: dict[int, float] = field(default_factory=dict)
    """Per-silo logit corrections (``silo-prior``): a row of silo ``s`` scores with
    ``offset[s]`` added, as that silo's prequential scores in ``fl.metrics`` do."""

    def score(self, row: Any, silo: int | None) -> float:
        """The live score of a row of ``silo`` (its base-rate correction applied)."""
        offset = self.silo_offsets.get(silo, 0.0) if silo is not None else 0.0
        return self.scorer.score(row, offset)


def load_live_model(
    value: bytes, spec_version: str, n_features: int, received_ms: int | None = None
) -> LiveModel:
    """Decode a model frame for this worker; raises ValueError if it does not fit."""
    frame = decode_model(value)
    meta = frame.meta
    if meta.spec_version != spec_version or meta.n_features != n_features:
        raise ValueError(
            f"model {meta.model_version} expects spec {meta.spec_version} with "
            f"{meta.n_features} features; this worker has {spec_version} with {n_features}"
        )
    # only a module this process imported (its pipeline's): never code a frame names
    scorer = frame_scorer(frame, import_code=False)
    if scorer.n_features != n_features:
        raise ValueError(f"model {meta.model_version} has input width {scorer.n_features}")
    metrics = {k: v for k, v in meta.metrics.items() if k != "standardisation_moments"}
    return LiveModel(
        meta.model_name,
        meta.model_version,
        meta.round,
        meta.spec_version,
        meta.created_ms,
        int(time.time() * 1000) if received_ms is None else received_ms,
        scorer,
        metrics,
        silo_offsets_of(meta),
    )


class ModelFollower:
    """Background reader of the model topic (see the module docstring).

    Parameters
    ----------
    bootstrap : str
        Kafka bootstrap servers.
    topic : str
        The (possibly namespaced) ``fl.model.global`` topic.
    model_name : str
        Record key of the model to follow.
    spec_version, n_features : str, int
        What the worker's rows look like; other models are ignored with a warning.
    on_model : callable, optional
        Called (in the follower thread) with each accepted model.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        model_name: str,
        spec_version: str,
        n_features: int,
        on_model: Callable[[LiveModel], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.model_name = model_name
        self.spec_version = spec_version
        self.n_features = n_features
        self.latest: LiveModel | None = None
        self.rejected = 0
        self.caught_up = threading.Event()
        self._on_model = on_model
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelFollower:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _assign(self, consumer: Any) -> dict[int, int]:
        """Assign every partition from the beginning; returns the current end offsets."""
        while not self._stop.is_set():
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                parts = sorted(meta.partitions)
                ends = {}
                for p in parts:
                    _low, high = consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=10
                    )
                    ends[p] = high
                consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
                return ends
            logger.warning("model topic %s not found; retrying", self.topic)
            self._stop.wait(2.0)
        return {}

    def _run(self) -> None:
        consumer = make_consumer(self.bootstrap, f"fedstream-model-follower-{uuid.uuid4().hex[:8]}")
        try:
            ends = self._assign(consumer)
            if not any(ends.values()):
                self.caught_up.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error() is not None:
                    logger.warning("model topic: %s", msg.error())
                    continue
                part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                self._accept(msg.key(), msg.value())
                if not self.caught_up.is_set() and offset + 1 >= ends.get(part, 0):
                    ends[part] = 0
                    if not any(ends.values()):
                        self.caught_up.set()
        except Exception:  # never let the thread die silently
            logger.exception("model follower stopped")
        finally:
            consumer.close()

    def _accept(self, key: bytes | None, value: bytes | None) -> None:
        if value is None or (key or b"").decode("utf-8", "replace") != self.model_name:
            return
        try:
            model = load_live_model(value, self.spec_version, self.n_features)
        except ValueError as exc:
            self.rejected += 1
            logger.warning("ignoring a model on %s: %s", self.topic, exc)
            return
        self.latest = model
        logger.info("new global model %s (round %d)", model.version, model.round)
        if self._on_model is not None:
            self._on_model(model)
