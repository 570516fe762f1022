"""Fraud modes of the realistic preset: their signatures; traits that say fraud only together."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from app.produce.fraud_modes import mode_episodes
from app.produce.presets import PRESETS
from app.produce.synthetic import CHANNELS, MERCHANT_CATEGORIES, SyntheticBank

DAY0 = 1_700_006_400.0  # a UTC midnight
ONLINE, TRANSFER = CHANNELS.index("online"), CHANNELS.index("transfer")
POS, ATM = CHANNELS.index("pos"), CHANNELS.index("atm")


@pytest.fixture(scope="module")
def bank() -> SyntheticBank:
    return SyntheticBank(customers=1000, silos=3, seed=7, preset="realistic")


def one_mode(name: str, bank: SyntheticBank, victims: int = 3000) -> dict[str, np.ndarray]:
    """One day's episodes of mode ``name`` alone for ``victims`` customers (with repeats)."""
    preset = PRESETS["realistic"]
    weights = tuple(1.0 if m.name == name else 0.0 for m in preset.modes)
    only = replace(preset, mode_weights=(weights,))
    rng = np.random.default_rng(3)
    who = rng.integers(0, bank.customers, victims)
    draw = mode_episodes(
        rng, only, who, DAY0, int(DAY0 // 86_400), mean_amount=bank.mean_amount,
        cat_cum=bank.cat_cum, rare_cats=bank.rare_cats, n_countries=10,
    )  # fmt: skip
    return {
        "ts": draw.ts,
        "ratio": draw.amount / bank.mean_amount[draw.customer],
        "amount": draw.amount,
        "channel": draw.channel,
        "category": draw.category,
        "foreign": draw.country >= 0,
    }


def test_each_mode_has_its_signature(bank: SyntheticBank) -> None:
    # Execute
    testing = one_mode("card_testing", bank)
    takeover = one_mode("account_takeover", bank)
    stolen = one_mode("stolen_card", bank)
    # Assert: card testing is bursts (3+ per episode) of tiny online payments
    assert testing["amount"].size >= 3 * 3000
    assert np.median(testing["amount"]) < 5.0
    assert (testing["channel"] == ONLINE).mean() > 0.9
    # account takeover: few, large, online or transfer, mostly abroad
    assert takeover["amount"].size < 2 * 3000
    assert np.median(takeover["ratio"]) > 3.0
    assert np.isin(takeover["channel"], [ONLINE, TRANSFER]).all()
    assert takeover["foreign"].mean() > 0.3
    # stolen card: shops and cash machines at home, electronics and jewellery
    assert np.isin(stolen["channel"], [POS, ATM]).all()
    assert stolen["foreign"].mean() < 0.15
    goods = [MERCHANT_CATEGORIES.index(c) for c in ("electronics", "jewelry", "fuel")]
    assert np.isin(stolen["category"], goods).mean() > 0.15
    for draw in (testing, takeover, stolen):
        assert ((draw["ts"] >= DAY0) & (draw["ts"] < DAY0 + 86_400)).all()


def test_traits_overlap_alone_and_say_fraud_together(bank: SyntheticBank) -> None:
    # Prepare
    last: dict[str, float] = {}
    rows = []
    for kind, key, v in bank.events(duration_s=14 * 86_400.0):
        if kind != "transaction":
            continue
        gap = v["ts"] - last.get(key, -math.inf)
        last[key] = v["ts"]
        tiny_online = v["amount"] < 5.0 and v["channel"] == "online"
        rows.append((v["label"], tiny_online, gap < 300, (v["ts"] % 86_400) < 6 * 3600))
    data = np.array(rows, dtype=bool)
    fraud, tiny, burst, night = data[:, 0], data[:, 1], data[:, 2], data[:, 3]
    # Assert: rare fraud
    assert 0.001 < fraud.mean() < 0.005
    # each trait alone is shown by more legitimate transactions than fraudulent ones...
    for trait in (tiny, burst, night):
        assert (trait & ~fraud).sum() > (trait & fraud).sum()
    # ...but a burst of tiny online payments is fraud far more often than either alone
    both = tiny & burst
    share = (both & fraud).sum() / both.sum()
    assert share > 5 * max((tiny & fraud).sum() / tiny.sum(), (burst & fraud).sum() / burst.sum())


def test_mode_weights_need_one_weight_per_mode() -> None:
    # Prepare
    preset = PRESETS["realistic"]
    # Execute / Assert
    with pytest.raises(ValueError, match="one weight per mode"):
        replace(preset, mode_weights=((1.0, 0.0),))
