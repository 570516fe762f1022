"""A synthetic bank: customers, transactions and injected fraud, as schema-valid event dicts.

Pure code (NumPy only, no Kafka). Draws are vectorised per simulated day; only the final
dict construction runs per event, so the generator makes a few hundred thousand events per
second. The same seed gives the same events.

Fraud is injected as *episodes*. In the ``classic`` preset an episode is a burst of 2-8
transactions within minutes, mostly at night, mostly with amounts several times the
customer's mean, often abroad, often in a merchant category the customer never uses, mostly
online or at ATMs; the ``realistic`` preset draws each episode from one of several fraud
modes (:mod:`app.produce.fraud_modes`). Silos differ in their customer mix, channel use,
travel and fraud rate (non-IID).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from app.produce.fraud_modes import mode_episodes, single_mode_episodes
from app.produce.presets import PRESETS

__all__ = [
    "CHANNELS",
    "MERCHANT_CATEGORIES",
    "SEGMENTS",
    "SILO_PROFILES",
    "Event",
    "EventKind",
    "InvalidEvent",
    "SiloProfile",
    "SyntheticBank",
    "invalid_events",
    "with_invalid",
]

logger = logging.getLogger(__name__)

EventKind = Literal["customer", "transaction"]
Event = tuple[EventKind, str, dict[str, Any]]
"""``(kind, key, value)``: key is the customer_id, value a schema-valid JSON object."""
InvalidEvent = tuple[EventKind, str, bytes, str]
"""``(kind, key, raw value bytes, expected reason hint)``."""

DAY_S = 86_400.0
MONTH_S = 30.44 * DAY_S
SEGMENTS = ("retail", "premium", "business", "student")
CHANNELS = ("pos", "online", "atm", "transfer")
MERCHANT_CATEGORIES = (
    "grocery", "restaurant", "fuel", "transport", "retail", "health",
    "utilities", "entertainment", "travel", "electronics", "jewelry", "digital_goods",
)  # fmt: skip
_DIGITAL = MERCHANT_CATEGORIES.index("digital_goods")
_ENTERTAINMENT = MERCHANT_CATEGORIES.index("entertainment")
_CAT_BASE = np.array([6, 5, 3, 3, 4, 2, 2, 2, 1, 1, 0.3, 0.5])  # everyday -> rare
FOREIGN_COUNTRIES = ("US", "FR", "ES", "IT", "TR", "NG", "BR", "CN", "TH", "AE")
# relative activity per UTC hour: quiet nights, busy afternoons
_HOURLY = np.array(
    [0.2, 0.1, 0.08, 0.08, 0.1, 0.25, 0.6, 1.0, 1.4, 1.6, 1.7, 1.9,
     2.2, 2.0, 1.8, 1.8, 1.9, 2.1, 2.2, 2.0, 1.6, 1.2, 0.8, 0.4]
)  # fmt: skip
_HOUR_P = _HOURLY / _HOURLY.sum()
# per segment: txns/day, log mean amount, credit multiplier, channel weights pos/online/atm/transfer
_SEG_RATE = np.array([3.0, 5.0, 8.0, 2.5])
_SEG_LOGAMT = np.log(np.array([40.0, 120.0, 200.0, 20.0]))
_SEG_CREDIT = np.array([1.0, 2.0, 2.5, 0.4])
_SEG_CHANNEL = np.array([[6, 3, 1, 1], [4, 5, 0.5, 1], [3, 3, 0.3, 4], [4, 4, 2, 0.5]])
_BAND_CREDIT = np.array([1000.0, 2500.0, 5000.0, 10000.0, 25000.0])
_FRAUD_CHANNEL_P = np.array([0.2, 0.55, 0.25, 0.0])


@dataclass(frozen=True)
class SiloProfile:
    """How one silo's customers look and how often they are defrauded.

    Attributes
    ----------
    segment_mix : probabilities of retail, premium, business, student.
    fraud_per_day : probability that a customer suffers a fraud episode on a given day.
    travel_rate : share of legitimate transactions made abroad.
    online_bias : multiplier on the online channel weight of legitimate transactions.
    home_countries : ISO2 home countries, the first one most common.
    """

    segment_mix: tuple[float, float, float, float]
    fraud_per_day: float
    travel_rate: float
    online_bias: float
    home_countries: tuple[str, ...]


SILO_PROFILES: tuple[SiloProfile, ...] = (
    SiloProfile((0.75, 0.08, 0.07, 0.10), 0.004, 0.02, 1.0, ("DE", "AT")),  # retail, low fraud
    SiloProfile((0.20, 0.55, 0.15, 0.10), 0.010, 0.05, 2.5, ("NL", "BE")),  # premium, online
    SiloProfile((0.40, 0.10, 0.20, 0.30), 0.025, 0.12, 1.5, ("GB", "IE")),  # fraud & foreign
)
"""Silo ``s`` uses ``SILO_PROFILES[s % 3]``."""


def _pick(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``cum[rows]`` (cumulative probabilities)."""
    u = rng.random(rows.size)[:, None]
    picked: np.ndarray = np.minimum((u > cum[rows]).sum(axis=1), cum.shape[1] - 1)
    return picked


def _with_sessions(
    rng: np.random.Generator, cust: np.ndarray, ts: np.ndarray, n: int, p: float, day0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add quick legitimate sessions: 1 + Poisson(1.5) purchases within minutes of one."""
    who = np.flatnonzero(rng.random(n) < p)
    extra = 1 + rng.poisson(1.5, who.size)
    anchor = day0 + rng.choice(24, who.size, p=_HOUR_P) * 3600.0 + rng.random(who.size) * 3600.0
    s_cust = np.repeat(who, extra)
    s_ts = np.repeat(anchor, extra) + np.clip(rng.exponential(90.0, s_cust.size), 5.0, 900.0)
    s_ts = np.minimum(s_ts, day0 + 86_399.0)
    return np.concatenate([cust, who, s_cust]), np.concatenate([ts, anchor, s_ts])


class SyntheticBank:
    """A deterministic synthetic bank.

    Parameters
    ----------
    customers : number of customers (ids ``cust-000000`` ...).
    silos : number of silos; customer ``i`` lives in a random silo.
    seed : NumPy Generator seed; equal seeds give equal event streams.
    start_ts : event time of the first event, epoch seconds (UTC).
    preset : ``classic``, ``realistic`` or ``single`` (see :mod:`app.produce.presets`).
    """

    def __init__(
        self,
        customers: int = 1000,
        silos: int = 3,
        seed: int = 0,
        start_ts: float = 1_700_000_000.0,
        preset: str = "classic",
    ) -> None:
        if customers < 1 or silos < 1:
            raise ValueError(f"need at least one customer and one silo, got {customers}, {silos}")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.preset = PRESETS[preset]
        self.customers, self.silos, self.seed, self.start_ts = customers, silos, seed, start_ts
        rng = np.random.default_rng(seed)
        n = customers
        profiles = [SILO_PROFILES[s % len(SILO_PROFILES)] for s in range(silos)]
        self.silo = rng.integers(0, silos, n)
        mix = np.array([p.segment_mix for p in profiles])[self.silo]
        self.segment = _pick(rng, np.cumsum(mix, axis=1), np.arange(n))
        seg = self.segment
        student = seg == 3
        self.age = np.where(
            student, rng.integers(18, 28, n), np.clip(rng.normal(45, 13, n), 23, 85)
        ).astype(int)
        band_lo = np.array([0, 3, 2, 0])[seg]
        band_hi = np.array([3, 4, 4, 1])[seg]
        self.income_band = band_lo + (rng.random(n) * (band_hi - band_lo + 1)).astype(int)
        credit = _BAND_CREDIT[self.income_band] * _SEG_CREDIT[seg] * rng.lognormal(0, 0.3, n)
        self.credit_limit = np.round(credit, -2)
        self.tenure0 = np.where(student, rng.integers(0, 60, n), rng.integers(0, 360, n))
        homes = [p.home_countries for p in profiles]
        second = rng.random(n) < 0.15
        self.home = np.array(
            [
                homes[s][1 if (b and len(homes[s]) > 1) else 0]
                for s, b in zip(self.silo, second, strict=True)
            ]
        )
        self.rate = _SEG_RATE[seg] * rng.lognormal(-0.1, 0.45, n)
        self.log_mu = _SEG_LOGAMT[seg] + 0.15 * (self.income_band - 2) + rng.normal(0, 0.3, n)
        self.log_sigma = rng.uniform(0.5, 0.9, n)
        self.mean_amount = np.exp(self.log_mu + self.log_sigma**2 / 2)
        pref = rng.dirichlet(np.ones(len(MERCHANT_CATEGORIES)) * 0.4, n) * _CAT_BASE
        pref /= pref.sum(axis=1, keepdims=True)
        self.cat_cum = np.cumsum(pref, axis=1)
        self.rare_cats = np.argsort(pref, axis=1)[:, :3]  # categories the customer hardly uses
        chan = _SEG_CHANNEL[seg] * rng.lognormal(0, 0.3, (n, len(CHANNELS)))
        chan[:, 1] *= np.array([p.online_bias for p in profiles])[self.silo]
        self.chan_cum = np.cumsum(chan / chan.sum(axis=1, keepdims=True), axis=1)
        self.travel = np.array([p.travel_rate for p in profiles])[self.silo]
        risk = np.array([1.0, 1.2, 0.8, 1.5])[seg] * rng.lognormal(0, 0.3, n)
        fraud_day = np.array([p.fraud_per_day for p in profiles])[self.silo]
        self.fraud_p = fraud_day * risk * self.preset.fraud_scale
        self.ids = [f"cust-{i:06d}" for i in range(n)]
        self._rng = rng

    def profile(self, i: int, ts: float) -> dict[str, Any]:
        """The full profile of customer ``i`` at event time ``ts`` (a customer event value)."""
        months = max(0, int((ts - self.start_ts) // MONTH_S))
        return {
            "customer_id": self.ids[i],
            "silo": int(self.silo[i]),
            "ts": ts,
            "age": int(self.age[i]),
            "income_band": int(self.income_band[i]),
            "credit_limit": float(self.credit_limit[i]),
            "segment": SEGMENTS[self.segment[i]],
            "tenure_months": int(min(self.tenure0[i] + months, 1200)),
            "home_country": str(self.home[i]),
        }

    def events(
        self, n_events: int | None = None, duration_s: float | None = None
    ) -> Iterator[Event]:
        """Stream events in non-decreasing event time.

        All customer profiles come first (at ``start_ts``), then transactions and the
        occasional profile update (credit limit change, tenure) day by day.

        Parameters
        ----------
        n_events : stop after this many events (customers included); None = no limit.
        duration_s : stop at event time ``start_ts + duration_s``; None = no limit.
            With neither, the stream is endless.
        """
        end = math.inf if duration_s is None else self.start_ts + duration_s
        limit = math.inf if n_events is None else n_events
        # a fresh generator per call: events() is repeatable on the same object
        rng = np.random.default_rng([self.seed, 1])
        credit = self.credit_limit.copy()
        emitted = 0
        for i in range(self.customers):
            if emitted >= limit:
                return
            yield "customer", self.ids[i], self.profile(i, self.start_ts)
            emitted += 1
        day0 = math.floor(self.start_ts / DAY_S) * DAY_S
        counter = 0
        prefix = f"s{self.seed}-"
        while day0 < end:
            chunk = self._day(rng, day0, credit)
            for kind, i, ts, value in chunk:
                if ts <= self.start_ts:
                    continue
                if ts >= end or emitted >= limit:
                    return
                if kind:
                    value["txn_id"] = f"{prefix}{counter}"
                    counter += 1
                    yield "transaction", value["customer_id"], value
                else:
                    yield "customer", self.ids[i], value
                emitted += 1
            day0 += DAY_S

    def _day(
        self, rng: np.random.Generator, day0: float, credit: np.ndarray
    ) -> list[tuple[bool, int, float, dict[str, Any]]]:
        """All events of one UTC day, sorted by time: ``(is_txn, customer, ts, value)``."""
        n, pre = self.customers, self.preset
        day = int(day0 // DAY_S)
        weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        # legitimate transactions (busier weekends; some customers go on a spree)
        boost = pre.weekend_boost if weekend else 1.0
        counts = rng.poisson(self.rate * boost)
        if pre.legit_spree_p > 0:  # guarded: the classic stream stays draw-for-draw the same
            counts = counts + (rng.random(n) < pre.legit_spree_p) * rng.poisson(4.0, n)
        cust = np.repeat(np.arange(n), counts)
        ts = day0 + rng.choice(24, cust.size, p=_HOUR_P) * 3600.0 + rng.random(cust.size) * 3600.0
        if pre.legit_session_p > 0:
            cust, ts = _with_sessions(rng, cust, ts, n, pre.legit_session_p, day0)
        m = cust.size
        amount = np.exp(self.log_mu[cust] + self.log_sigma[cust] * rng.standard_normal(m))
        if pre.legit_big_p > 0:
            splurge = rng.random(m) < pre.legit_big_p
            amount = np.where(splurge, amount * rng.lognormal(np.log(4.0), 0.5, m), amount)
        cat = _pick(rng, self.cat_cum, cust)
        chan = _pick(rng, self.chan_cum, cust)
        if pre.legit_micro_p > 0:  # app-store and streaming micro-payments
            micro = (chan == 1) & (rng.random(m) < pre.legit_micro_p)
            amount = np.where(micro, rng.lognormal(np.log(2.5), 0.6, m), amount)
            cat = np.where(micro, np.where(rng.random(m) < 0.7, _DIGITAL, _ENTERTAINMENT), cat)
        abroad = rng.random(m) < self.travel[cust]
        if pre.legit_abroad_night_p > 0:  # travellers' local day is UTC night
            shifted = abroad & (rng.random(m) < pre.legit_abroad_night_p)
            ts = np.where(shifted, day0 + rng.random(m) * 6 * 3600.0, ts)
        country = np.where(abroad, rng.integers(0, len(FOREIGN_COUNTRIES), m), -1)
        # fraud episodes: one transaction or a burst within minutes
        fraud_boost = pre.weekend_fraud if weekend else 1.0
        victims = np.flatnonzero(rng.random(n) < self.fraud_p * fraud_boost)
        if pre.modes:
            draw = mode_episodes(
                rng, pre, victims, day0, day, mean_amount=self.mean_amount,
                cat_cum=self.cat_cum, rare_cats=self.rare_cats,
                n_countries=len(FOREIGN_COUNTRIES),
            )  # fmt: skip
        else:
            draw = single_mode_episodes(
                rng, pre, victims, day0, day, log_mu=self.log_mu, log_sigma=self.log_sigma,
                mean_amount=self.mean_amount, cat_cum=self.cat_cum, rare_cats=self.rare_cats,
                n_countries=len(FOREIGN_COUNTRIES),
            )  # fmt: skip
        fcust, f_ts, f_amount = draw.customer, draw.ts, draw.amount
        f_cat, f_chan, f_country = draw.category, draw.channel, draw.country
        # profile updates (about one per customer per 100 days)
        upd = np.flatnonzero(rng.random(n) < 0.01)
        u_ts = day0 + rng.random(upd.size) * DAY_S
        factor = rng.choice(np.array([0.8, 1.25, 1.5]), upd.size)
        # merge and order
        all_ts = np.round(np.concatenate([ts, f_ts, u_ts]), 3)
        order = np.argsort(all_ts, kind="stable").tolist()
        t_cust = np.concatenate([cust, fcust]).tolist()
        t_amt = np.round(np.clip(np.concatenate([amount, f_amount]), 0.01, 1e9), 2).tolist()
        t_cat = np.array(MERCHANT_CATEGORIES)[np.concatenate([cat, f_cat])].tolist()
        t_chan = np.array(CHANNELS)[np.concatenate([chan, f_chan])].tolist()
        cidx = np.concatenate([country, f_country])
        foreign = np.array(FOREIGN_COUNTRIES)[np.maximum(cidx, 0)]
        t_country = np.where(cidx < 0, self.home[np.concatenate([cust, fcust])], foreign).tolist()
        t_ts = all_ts.tolist()
        ids = self.ids
        out: list[tuple[bool, int, float, dict[str, Any]]] = []
        n_txn = m + fcust.size
        for j in order:
            t = t_ts[j]
            if j < n_txn:
                c = t_cust[j]
                value = {
                    "txn_id": "",
                    "customer_id": ids[c],
                    "ts": t,
                    "amount": t_amt[j],
                    "merchant_category": t_cat[j],
                    "channel": t_chan[j],
                    "country": t_country[j],
                    "label": 0 if j < m else 1,
                }
                out.append((True, c, t, value))
            else:
                c = int(upd[j - n_txn])
                credit[c] = min(float(np.round(credit[c] * factor[j - n_txn], -2)), 1e9)
                value = self.profile(c, t)
                value["credit_limit"] = float(credit[c])
                out.append((False, c, t, value))
        return out


def invalid_events(seed: int = 0) -> list[InvalidEvent]:
    """A fixed set of invalid inputs, one per failure mode, for tests and DLQ demos.

    Parameters
    ----------
    seed : varies the keys and numbers; the set of failure modes is always the same.

    Returns
    -------
    list of ``(kind, key, raw_bytes, expected_reason_hint)``.
    """
    rng = np.random.default_rng([seed, 99])
    key = f"bad-{seed}-"
    ts = 1_700_000_000.0 + float(rng.integers(0, 86_400))
    amt = round(float(rng.uniform(1, 500)), 2)

    def txn(i: int, **fields: Any) -> dict[str, Any]:
        base = {"txn_id": f"{key}t{i}", "customer_id": f"{key}{i}", "ts": ts, "amount": amt}
        return {**base, **fields}

    def dumps(value: dict[str, Any]) -> bytes:
        return orjson.dumps(value)

    missing = txn(2)
    del missing["amount"]
    return [
        ("transaction", f"{key}0", b'{"txn_id": "x", "customer_id": ', "malformed json"),
        ("transaction", f"{key}1", dumps(txn(1, amount=str(amt))), "wrong type: amount"),
        ("transaction", f"{key}2", dumps(missing), "missing field: amount"),
        (
            "transaction",
            f"{key}3",
            dumps(txn(3)).replace(str(amt).encode(), b"NaN"),
            "nan amount",
        ),
        (
            "transaction",
            f"{key}4",
            dumps(txn(4, merchant_category="x" * 70_000)),
            "payload too large",
        ),
        ("transaction", f"{key}5", dumps(txn(5, amount=-amt)), "negative amount"),
        (
            "customer",
            f"{key}6",
            dumps({"customer_id": f"{key}6", "silo": 99, "ts": ts, "age": 40}),
            "unknown silo 99",
        ),
        (
            "customer",
            f"{key}7",
            dumps({"customer_id": f"{key}7", "silo": 0, "ts": ts, "age": True}),
            "bool where int expected: age",
        ),
        ("transaction", f"{key}8", dumps(txn(8, coupon_code=1)), "unknown field: coupon_code"),
        ("customer", f"{key}9", b'["not", "an", "object"]', "not a json object"),
    ]


def with_invalid(
    events: Iterator[Event], invalid: list[InvalidEvent], n: int, every: int = 100
) -> Iterator[Event | InvalidEvent]:
    """Interleave ``n`` invalid events (cycling through ``invalid``) into a stream.

    One invalid event follows every ``every`` valid events; leftovers come at the end.
    """
    sent = 0
    for i, event in enumerate(events, 1):
        yield event
        if sent < n and invalid and i % every == 0:
            yield invalid[sent % len(invalid)]
            sent += 1
    while sent < n and invalid:
        yield invalid[sent % len(invalid)]
        sent += 1
