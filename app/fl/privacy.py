"""The privacy account of server-side DP: epsilon per round with Flower's RDP accountant.

With ``dp-clip`` > 0 and ``dp-noise`` > 0 the strategy is Flower's
``DifferentialPrivacyServerSideFixedClipping``: each silo's model update is clipped to
L2 norm ``dp-clip`` and Gaussian noise of standard deviation ``dp-noise * dp-clip / k`` is
added to the average of the ``k`` updates aggregated that round. Each published round is
one Gaussian release with noise multiplier ``dp-noise``; :class:`PrivacyLedger` composes
them with Flower's ``RdpAccountant`` and reports the cumulative epsilon at ``dp-delta``.

What it covers: **silo level** (client level in Flower's terms): the published global
models hide whether any ONE silo took part (add-or-remove-one neighbouring relation),
whatever that silo's data. It is not a record-level guarantee for a customer inside a
silo beyond what follows from that, and it says nothing about the stream topics, the
chatbot or the metrics (``fl.metrics`` carries per-silo counts and histograms that are
not noised). No sampling amplification is claimed (every connected silo is asked).

Why our own loop and not the wrapper's ``accountant=``: Flower's wrapper insists that
exactly ``num_sampled_clients`` replies arrive every round and is configured once per
round number, while the fedstream server skips idle attempts and aggregates whichever
silos had data. So the server (a) averages with equal weights under DP (the calibration
assumes each silo weighs ``1/k``), (b) sets the wrapper's ``num_sampled_clients`` to the
``k`` replies it aggregates, so every release has noise multiplier ``dp-noise``, and
(c) composes one release per published round here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import Message
from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

__all__ = ["GUARANTEE", "PrivacyLedger", "calibrate_for_dp", "ledger_for"]

logger = logging.getLogger(__name__)

GUARANTEE = (
    "silo-level (add/remove one silo), server-side fixed clipping, no sampling amplification"
)


@dataclass
class PrivacyLedger:
    """Cumulative privacy spent by the published rounds of one model.

    Parameters
    ----------
    noise_multiplier, clip : the DP wrapper's ``dp-noise`` and ``dp-clip``.
    delta : the delta epsilon is stated at.
    population : the number of silos of the federation.
    max_epsilon : stop before a round would exceed it (0 = no limit).
    """

    noise_multiplier: float
    clip: float
    delta: float
    population: int
    max_epsilon: float = 0.0

    def __post_init__(self) -> None:
        config = PrivacyConfig(
            target_delta=self.delta,
            population_size=max(1, self.population),
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
            max_epsilon=self.max_epsilon or None,
        )
        self._accountant = RdpAccountant(config)
        self._history: list[list[float]] = []  # [noise multiplier, releases] as composed

    def _event(self) -> GaussianPrivacyEvent:
        return GaussianPrivacyEvent(
            noise_multiplier=self.noise_multiplier,
            sample_size=max(1, self.population),
            population_size=max(1, self.population),
        )

    @property
    def releases(self) -> int:
        return self._accountant.num_releases

    @property
    def epsilon(self) -> float:
        """Cumulative epsilon at :attr:`delta` (0 before the first release)."""
        return self._accountant.get_epsilon(self.delta) if self.releases else 0.0

    def restore(self, compositions: Sequence[Sequence[float]]) -> None:
        """Count the earlier releases ``[[noise multiplier, count], ...]`` of a resumed
        model (its last ``privacy`` document), whatever noise they were made with."""
        population = max(1, self.population)
        for noise, count in compositions:
            if int(count) > 0:
                event = GaussianPrivacyEvent(float(noise), population, population)
                self._accountant.compose(event, int(count))
                self._history.append([float(noise), int(count)])

    def next_would_exceed(self) -> bool:
        """Whether one more round would spend more than ``max_epsilon``."""
        return bool(self.max_epsilon) and self._accountant.would_exceed(self._event())

    def record_round(self) -> dict[str, Any]:
        """Compose one published round; returns its ``privacy`` document for fl.metrics."""
        self._accountant.compose(self._event())
        if self._history and self._history[-1][0] == self.noise_multiplier:
            self._history[-1][1] += 1
        else:
            self._history.append([self.noise_multiplier, 1])
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "releases": self.releases,
            "noise_multiplier": self.noise_multiplier,
            "clip": self.clip,
            "max_epsilon": self.max_epsilon or None,
            "compositions": [list(c) for c in self._history],
            "accountant": "flwr RdpAccountant",
            "guarantee": GUARANTEE,
        }


def ledger_for(
    noise: float,
    clip: float,
    delta: float,
    population: int,
    max_epsilon: float,
    resumed: dict[str, Any] | None,
) -> PrivacyLedger:
    """A ledger that also counts the releases of a resumed model's ``privacy`` document."""
    ledger = PrivacyLedger(noise, clip, delta, population, max_epsilon)
    if resumed is None:
        return ledger
    if resumed.get("compositions"):
        ledger.restore(resumed["compositions"])
        logger.info("privacy: resumed with %d earlier releases, epsilon %.3f at delta %g",
                    ledger.releases, ledger.epsilon, delta)  # fmt: skip
    return ledger


def calibrate_for_dp(strategy: Strategy, replies: list[Message]) -> None:
    """Under Flower's server-side DP wrapper: equal weights and noise for ``len(replies)``.

    The wrapper's noise (``noise * clip / num_sampled_clients``) protects one silo only
    if that silo weighs ``1/k`` in the average of the ``k`` aggregated updates, so every
    reply's weight is set to 1 and ``num_sampled_clients`` to ``k`` (see the module
    docstring). No-op for other strategies.
    """
    if not isinstance(strategy, DifferentialPrivacyServerSideFixedClipping) or not replies:
        return
    strategy.num_sampled_clients = len(replies)
    inner = strategy.strategy
    key = inner.weighted_by_key if isinstance(inner, FedAvg) else None
    for reply in replies:
        for record in reply.content.metric_records.values():
            if key is not None and key in record:
                record[key] = 1
