"""Fraud as a mixture of modes, each a conjunction of traits normal customers show singly.

Real card fraud is not one signal. Card testing is a burst of tiny online payments,
account takeover a large transfer from a new country at night, a stolen card a run of
purchases in shops the owner never visits. Each trait alone is common among legitimate
customers (travellers abroad at night, splurges, micro-payments, quick shopping sessions,
see :class:`app.produce.presets.SyntheticPreset`); only the conjunction is rare. So the
log-odds of fraud are no sum over features, and a linear model cannot rank them as well as
one that combines features (the batch ceiling of ``bench quality`` shows how much).

Pure NumPy: :func:`mode_episodes` draws one day's fraud transactions, vectorised over the
episodes of all modes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.produce.presets import SyntheticPreset

__all__ = ["FraudMode", "ModeDraw", "mode_episodes", "single_mode_episodes"]

logger = logging.getLogger(__name__)

N_CATEGORIES = 12
"""Length of :data:`app.produce.synthetic.MERCHANT_CATEGORIES` (category weights below)."""


@dataclass(frozen=True)
class FraudMode:
    """One way of defrauding a customer.

    Attributes
    ----------
    name : short name (docs and logs).
    size_min, size_extra : transactions per episode, ``min + Poisson(extra)`` (at most 8).
    gap_s : mean seconds between the transactions of an episode (exponential, 5 s..6 h).
    night_p : share of episodes starting at night (00-06 UTC).
    amount_median : median amount in currency units when the amount does not depend on the
        customer (tiny test payments); 0 = a multiple of the customer's mean amount.
    amount_mult : median multiple of the customer's mean amount (when ``amount_median`` is 0).
    amount_sigma : log-normal spread of the amount.
    channels : channel weights (pos, online, atm, transfer).
    foreign_p : share of episodes abroad (scaled by the preset's foreign wave).
    newcat_p : share of episodes in a category the customer hardly uses.
    categories : category weights when not in one the customer hardly uses; empty = the
        customer's own preferences.
    """

    name: str
    size_min: int
    size_extra: float
    gap_s: float
    night_p: float
    amount_median: float
    amount_mult: float
    amount_sigma: float
    channels: tuple[float, float, float, float]
    foreign_p: float
    newcat_p: float
    categories: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.categories and len(self.categories) != N_CATEGORIES:
            raise ValueError(f"{self.name}: {len(self.categories)} category weights, need 12")


@dataclass(frozen=True)
class ModeDraw:
    """One day's fraud transactions, in episode order (not yet sorted by time).

    ``country`` is an index into the foreign countries, -1 = the customer's home.
    """

    customer: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    category: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    mode: np.ndarray | None = None


def _norm(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = rows / rows.sum(axis=-1, keepdims=True)
    return out


def mode_episodes(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    victims: np.ndarray,
    day0: float,
    day: int,
    *,
    mean_amount: np.ndarray,
    cat_cum: np.ndarray,
    rare_cats: np.ndarray,
    n_countries: int,
) -> ModeDraw:
    """Fraud transactions of one day: each victim suffers one episode of a drawn mode.

    Parameters
    ----------
    rng : the bank's day generator.
    preset : its ``modes`` and ``mode_weights`` (the row of week ``day // 7``).
    victims : customer indices defrauded today.
    day0, day : the day's start (epoch seconds) and its number since the epoch.
    mean_amount, cat_cum, rare_cats : per customer: mean amount, cumulative category
        preferences, the three categories it hardly uses.
    n_countries : number of foreign countries.
    """
    modes = preset.modes
    e = victims.size
    weights = preset.mode_weights[(day // 7) % len(preset.mode_weights)]
    kind = rng.choice(len(modes), e, p=_norm(np.asarray(weights, dtype=np.float64)))

    def per_mode(values: list[float]) -> np.ndarray:
        out: np.ndarray = np.asarray(values, dtype=np.float64)[kind]
        return out

    size_min = per_mode([m.size_min for m in modes]).astype(int)
    size = np.clip(size_min + rng.poisson(per_mode([m.size_extra for m in modes])), 1, 8)
    night = rng.random(e) < per_mode([m.night_p for m in modes])
    hour = np.where(night, rng.integers(0, 6, e), rng.integers(6, 23, e))
    start = day0 + hour * 3600.0 + rng.random(e) * 3600.0
    wave = preset.foreign_share(day) / max(preset.foreign_p, 1e-9)
    foreign = rng.random(e) < np.clip(per_mode([m.foreign_p for m in modes]) * wave, 0.0, 1.0)
    ep_country = np.where(foreign, rng.integers(0, n_countries, e), -1)
    chan_p = _norm(np.array([m.channels for m in modes], dtype=np.float64))
    ep_chan = np.minimum((rng.random(e)[:, None] > np.cumsum(chan_p, axis=1)[kind]).sum(axis=1), 3)
    newcat = rng.random(e) < per_mode([m.newcat_p for m in modes])
    rare = rare_cats[victims, rng.integers(0, 3, e)]
    own_u = rng.random(e)[:, None]
    own = np.minimum((own_u > cat_cum[victims]).sum(axis=1), N_CATEGORIES - 1)
    fixed_p = np.array(
        [m.categories if m.categories else (1.0,) * N_CATEGORIES for m in modes], dtype=np.float64
    )
    fixed = np.minimum(
        (rng.random(e)[:, None] > np.cumsum(_norm(fixed_p), axis=1)[kind]).sum(axis=1),
        N_CATEGORIES - 1,
    )
    has_fixed = np.array([bool(m.categories) for m in modes])[kind]
    ep_cat = np.where(newcat, rare, np.where(has_fixed, fixed, own))
    # expand episodes into transactions
    ep = np.repeat(np.arange(e), size)
    f = ep.size
    gaps = np.clip(rng.exponential(per_mode([m.gap_s for m in modes])[ep]), 5.0, 6 * 3600.0)
    first = (np.cumsum(size) - size).astype(int)
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    ts = np.minimum(start[ep] + csum - np.repeat(csum[first], size), day0 + 86_399.0)
    cust = victims[ep]
    fixed_amount = per_mode([m.amount_median for m in modes])[ep]
    log_median = np.where(
        fixed_amount > 0,
        np.log(np.maximum(fixed_amount, 1e-9)),
        np.log(mean_amount[cust] * np.maximum(per_mode([m.amount_mult for m in modes])[ep], 1e-9)),
    )
    amount = np.exp(
        log_median + per_mode([m.amount_sigma for m in modes])[ep] * rng.standard_normal(f)
    )
    return ModeDraw(cust, ts, amount, ep_cat[ep], ep_chan[ep], ep_country[ep], kind[ep])


def single_mode_episodes(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    victims: np.ndarray,
    day0: float,
    day: int,
    *,
    log_mu: np.ndarray,
    log_sigma: np.ndarray,
    mean_amount: np.ndarray,
    cat_cum: np.ndarray,
    rare_cats: np.ndarray,
    n_countries: int,
) -> ModeDraw:
    """One mode of fraud from the preset's episode knobs (``classic``, ``single``).

    Each trait (night, large amount, abroad, rare category, channel) is drawn on its own,
    so the fraud log-odds are close to a sum over features. The draws are the generator's
    from before fraud modes, in the same order: equal seeds give the same events as then.
    """
    pre = preset
    e = victims.size
    size = np.clip(pre.episode_min + rng.poisson(pre.episode_extra, e), 1, 8)
    night = rng.random(e) < pre.night_p
    hour = np.where(night, rng.integers(0, 6, e), rng.integers(6, 23, e))
    start = day0 + hour * 3600.0 + rng.random(e) * 3600.0
    ep_foreign = rng.random(e) < pre.foreign_share(day)
    ep_country = np.where(ep_foreign, rng.integers(0, n_countries, e), -1)
    ep_chan = rng.choice(4, e, p=pre.channel_p(day // 7))
    ep_newcat = rng.random(e) < pre.newcat_p
    ep_cat = rare_cats[victims, rng.integers(0, 3, e)]
    ep = np.repeat(np.arange(e), size)
    f = ep.size
    gaps = np.clip(rng.exponential(60.0, f), 5.0, 300.0)
    first = (np.cumsum(size) - size).astype(int)
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    ts = start[ep] + csum - np.repeat(csum[first], size)
    cust = victims[ep]
    normal = np.exp(log_mu[cust] + log_sigma[cust] * rng.standard_normal(f))
    big = mean_amount[cust] * rng.lognormal(np.log(pre.big_mult), 0.5, f)
    amount = np.where(rng.random(f) < pre.big_p, big, normal)
    u = rng.random(f)[:, None]
    own = np.minimum((u > cat_cum[cust]).sum(axis=1), N_CATEGORIES - 1)
    category = np.where(ep_newcat[ep], ep_cat[ep], own)
    return ModeDraw(cust, ts, amount, category, ep_chan[ep], ep_country[ep])
