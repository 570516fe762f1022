"""Tell when committed offsets fall behind what the worker has processed.

The worker calls :meth:`CommitWatch.observe` after every commit with, per input partition,
the position after its last processed event and the committed offset. What was processed
``grace`` commits ago must be committed by now; otherwise the partition *trails* (a crash
would replay everything since its committed offset, and lag monitoring shows a backlog that
is not there). A rebalance resets the watch: a partition counts again once it has
processed an event after the reset.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

__all__ = ["CommitWatch", "Trail"]

logger = logging.getLogger(__name__)

GRACE_COMMITS = 2
"""Commits a processed offset may wait before it must be committed."""


@dataclass(frozen=True)
class Trail:
    """One partition whose committed offset is behind where it was processed earlier."""

    partition: Hashable
    committed: int | None
    processed_before: int

    def __str__(self) -> str:
        return (
            f"{self.partition}: committed {self.committed}, but {self.processed_before} "
            f"was processed {GRACE_COMMITS} commits ago"
        )


class CommitWatch:
    """Per partition, the processed positions of the last ``grace`` commits."""

    def __init__(self, grace: int = GRACE_COMMITS) -> None:
        self.grace = grace
        self._history: dict[Hashable, deque[int]] = {}
        self._frozen: dict[Hashable, int] = {}
        self.trails = 0
        self.checks = 0

    def observe(
        self, processed: Mapping[Hashable, int], committed: Mapping[Hashable, int | None]
    ) -> list[Trail]:
        """Check one commit; returns the partitions that trail (also counted)."""
        out = []
        for key, position in processed.items():
            if self._frozen.get(key) == position:
                continue  # nothing processed since the last reset
            self._frozen.pop(key, None)
            history = self._history.setdefault(key, deque(maxlen=self.grace))
            if len(history) == self.grace:
                self.checks += 1
                done = committed.get(key)
                if done is None or done < history[0]:
                    out.append(Trail(key, done, history[0]))
            history.append(position)
        self.trails += len(out)
        return out

    def reset(self, processed: Mapping[Hashable, int]) -> None:
        """Forget every partition (a rebalance); ignore each until it processes again."""
        self._history.clear()
        self._frozen = dict(processed)

    def take_summary(self) -> str:
        text = f"commit checks {self.checks}, trailing {self.trails}"
        self.checks = self.trails = 0
        return text
