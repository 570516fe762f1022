"""Presets of the synthetic bank: how rare and how recognisable fraud is, and how it drifts.

- ``classic``: the original generator. Fraud is about 1-2 % of transactions and easy to
  spot (bursts at night, 6x amounts, abroad, new categories); a model reaches ~0.99 ROC AUC.
- ``realistic``: fraud at about 0.3 % of transactions whose signals overlap with normal
  behaviour (single transactions as well as bursts, moderate amounts, mostly domestic,
  often in categories the customer uses), legitimate customers who sometimes look like
  fraud (large purchases, shopping sprees, night activity), drift over the day and the
  week (busier weekends, a fraud pattern that alternates week by week, a slow wave in
  foreign fraud) and silos that differ in customers and fraud rate (non-IID).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["PRESETS", "SyntheticPreset"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticPreset:
    """Knobs of fraud injection and legitimate look-alikes.

    Attributes
    ----------
    fraud_scale : multiplier on each silo's ``fraud_per_day``.
    episode_min, episode_extra : fraud episode size ``min + Poisson(extra)`` (at most 8).
    night_p : share of episodes at night (00-06 UTC).
    big_p, big_mult : share of fraud transactions with an unusual amount, and its median
        multiple of the customer's mean.
    foreign_p, newcat_p : share of episodes abroad / in a category the customer hardly uses.
    fraud_channels : channel weights of fraud (pos, online, atm, transfer), one row per
        alternating week (one row = no drift).
    legit_big_p : share of legitimate transactions with an unusually large amount.
    legit_spree_p : probability per customer and day of a legitimate burst of purchases.
    weekend_boost : activity multiplier of legitimate customers on Saturday and Sunday.
    weekend_fraud : fraud rate multiplier on weekends.
    foreign_wave : amplitude of a 14-day wave in the share of foreign fraud.
    """

    fraud_scale: float
    episode_min: int
    episode_extra: float
    night_p: float
    big_p: float
    big_mult: float
    foreign_p: float
    newcat_p: float
    fraud_channels: tuple[tuple[float, float, float, float], ...]
    legit_big_p: float = 0.0
    legit_spree_p: float = 0.0
    weekend_boost: float = 1.0
    weekend_fraud: float = 1.0
    foreign_wave: float = 0.0

    def channel_p(self, week: int) -> np.ndarray:
        """Fraud channel probabilities in week ``week`` (since the epoch)."""
        row = np.asarray(self.fraud_channels[week % len(self.fraud_channels)], dtype=np.float64)
        out: np.ndarray = row / row.sum()
        return out

    def foreign_share(self, day: int) -> float:
        """Share of foreign fraud episodes on day ``day`` (since the epoch)."""
        wave = 1.0 + self.foreign_wave * np.sin(2.0 * np.pi * day / 14.0)
        return float(np.clip(self.foreign_p * wave, 0.0, 1.0))


PRESETS: dict[str, SyntheticPreset] = {
    "classic": SyntheticPreset(
        fraud_scale=1.0,
        episode_min=2,
        episode_extra=1.5,
        night_p=0.6,
        big_p=0.75,
        big_mult=6.0,
        foreign_p=0.65,
        newcat_p=0.7,
        fraud_channels=((0.2, 0.55, 0.25, 0.0),),
    ),
    "realistic": SyntheticPreset(
        fraud_scale=0.45,
        episode_min=1,
        episode_extra=0.8,
        night_p=0.3,
        big_p=0.45,
        big_mult=3.0,
        foreign_p=0.3,
        newcat_p=0.4,
        fraud_channels=((0.25, 0.5, 0.2, 0.05), (0.45, 0.15, 0.35, 0.05)),
        legit_big_p=0.03,
        legit_spree_p=0.02,
        weekend_boost=1.3,
        weekend_fraud=1.5,
        foreign_wave=0.5,
    ),
}
