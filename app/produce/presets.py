"""Presets of the synthetic bank: how rare and how recognisable fraud is, and how it drifts.

- ``classic``: the original generator. Fraud is about 1-2 % of transactions and easy to
  spot (bursts at night, 6x amounts, abroad, new categories); a model reaches ~0.99 ROC AUC.
- ``realistic``: fraud at about 0.3 % of transactions as a mixture of four modes
  (:mod:`app.produce.fraud_modes`): card testing (bursts of tiny online payments), account
  takeover (large online payments or transfers, often abroad and at night), stolen card
  (runs of shop and cash-machine purchases in shops the owner hardly visits) and misuse
  (single ordinary-looking purchases). Each trait alone is common among legitimate
  customers (micro-payments, quick shopping sessions, travellers abroad at UTC night,
  large purchases, sprees), only the conjunction is rare, so the fraud log-odds are no
  sum over features. Drift over the day and the week (busier weekends, a mode mix that
  alternates week by week, a 14-day wave in foreign fraud) and silos that differ in
  customers and fraud rate (non-IID).
- ``single``: the realistic preset before fraud modes: one mode whose traits (night,
  amount, abroad, rare category, channel, burst) are drawn independently, so the signal
  is close to linear; kept to reproduce the figures measured on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from app.produce.fraud_modes import FraudMode

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
    modes : fraud modes (:class:`app.produce.fraud_modes.FraudMode`); empty = one mode
        drawn from the episode knobs above (``classic``, ``single``).
    mode_weights : shares of the modes' episodes, one row per alternating week.
    legit_session_p : probability per customer and day of a quick legitimate session:
        1 + Poisson(1.5) more purchases within minutes, usual amounts and channels.
    legit_micro_p : share of legitimate online transactions that are micro-payments
        (median 2.5, digital goods or entertainment).
    legit_abroad_night_p : share of legitimate transactions abroad made at local day but
        UTC night (travellers in other time zones).
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
    modes: tuple[FraudMode, ...] = ()
    mode_weights: tuple[tuple[float, ...], ...] = ()
    legit_session_p: float = 0.0
    legit_micro_p: float = 0.0
    legit_abroad_night_p: float = 0.0

    def __post_init__(self) -> None:
        if self.modes and (
            not self.mode_weights or any(len(w) != len(self.modes) for w in self.mode_weights)
        ):
            raise ValueError("mode_weights needs one weight per mode in every row")

    def channel_p(self, week: int) -> np.ndarray:
        """Fraud channel probabilities in week ``week`` (since the epoch)."""
        row = np.asarray(self.fraud_channels[week % len(self.fraud_channels)], dtype=np.float64)
        out: np.ndarray = row / row.sum()
        return out

    def foreign_share(self, day: int) -> float:
        """Share of foreign fraud episodes on day ``day`` (since the epoch)."""
        wave = 1.0 + self.foreign_wave * np.sin(2.0 * np.pi * day / 14.0)
        return float(np.clip(self.foreign_p * wave, 0.0, 1.0))


# category weights: grocery, restaurant, fuel, transport, retail, health, utilities,
# entertainment, travel, electronics, jewelry, digital_goods
_CARD_TESTING = FraudMode(
    "card_testing", size_min=3, size_extra=2.0, gap_s=40.0, night_p=0.35,
    amount_median=2.0, amount_mult=0.0, amount_sigma=0.6,
    channels=(0.02, 0.95, 0.0, 0.03), foreign_p=0.15, newcat_p=0.3,
    categories=(0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 5),
)  # fmt: skip
"""Bursts of tiny online payments that check a stolen card number works."""
_ACCOUNT_TAKEOVER = FraudMode(
    "account_takeover", size_min=1, size_extra=0.5, gap_s=600.0, night_p=0.55,
    amount_median=0.0, amount_mult=5.0, amount_sigma=0.5,
    channels=(0.0, 0.45, 0.0, 0.55), foreign_p=0.6, newcat_p=0.2,
)  # fmt: skip
"""Large online payments or transfers, often from abroad and at night."""
_STOLEN_CARD = FraudMode(
    "stolen_card", size_min=2, size_extra=1.0, gap_s=300.0, night_p=0.15,
    amount_median=0.0, amount_mult=2.5, amount_sigma=0.5,
    channels=(0.6, 0.0, 0.4, 0.0), foreign_p=0.05, newcat_p=0.7,
    categories=(0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 2, 0),
)  # fmt: skip
"""A run of shop and cash-machine purchases at home, in shops the owner hardly visits."""
_MISUSE = FraudMode(
    "misuse", size_min=1, size_extra=0.0, gap_s=60.0, night_p=0.2,
    amount_median=0.0, amount_mult=1.2, amount_sigma=0.6,
    channels=(0.4, 0.4, 0.15, 0.05), foreign_p=0.05, newcat_p=0.2,
)  # fmt: skip
"""Single ordinary-looking purchases (by someone close to the owner): hardly detectable."""


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
        fraud_scale=0.31,
        episode_min=1,
        episode_extra=0.0,
        night_p=0.0,
        big_p=0.0,
        big_mult=1.0,
        foreign_p=0.3,  # the wave's reference: each mode's foreign share moves with it
        newcat_p=0.0,
        fraud_channels=((1.0, 1.0, 1.0, 1.0),),
        legit_big_p=0.03,
        legit_spree_p=0.02,
        weekend_boost=1.3,
        weekend_fraud=1.5,
        foreign_wave=0.5,
        modes=(_CARD_TESTING, _ACCOUNT_TAKEOVER, _STOLEN_CARD, _MISUSE),
        mode_weights=((0.35, 0.25, 0.2, 0.2), (0.15, 0.35, 0.3, 0.2)),
        legit_session_p=0.03,
        legit_micro_p=0.08,
        legit_abroad_night_p=0.4,
    ),
    "single": SyntheticPreset(
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
