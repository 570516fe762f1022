"""Silo routing: explicit silo, then profile, then a stable hash."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from app.features.records import Customer, Transaction
from app.features.routing import hash_silo, route_silo
from app.features.validation import InvalidRecord

SILOS = (0, 1, 2)


def test_transaction_silo_wins() -> None:
    # Prepare
    txn = Transaction("t", "c1", 0.0, 1.0, silo=2)
    profile = Customer("c1", 1, 0.0)

    # Execute / Assert
    assert route_silo(txn, profile, SILOS) == 2
    assert route_silo(txn, None, SILOS) == 2


def test_profile_silo_is_used_when_the_transaction_has_none() -> None:
    # Execute / Assert
    assert route_silo(Transaction("t", "c1", 0.0, 1.0), Customer("c1", 1, 0.0), SILOS) == 1


def test_unknown_customers_are_hashed_stably() -> None:
    # Prepare
    ids = [f"cust-{i}" for i in range(3000)]

    # Execute
    silos = [route_silo(Transaction("t", cid, 0.0, 1.0), None, SILOS) for cid in ids]

    # Assert
    assert silos == [SILOS[zlib.crc32(cid.encode()) % 3] for cid in ids]
    assert silos == [hash_silo(cid, SILOS) for cid in ids]
    assert min(Counter(silos).values()) > 800
    assert hash_silo("c1", (5, 9)) in (5, 9)


def test_unconfigured_silos_are_invalid_records() -> None:
    # Execute / Assert
    with pytest.raises(InvalidRecord, match=r"unknown silo 7 \(configured: 0..2\)"):
        route_silo(Transaction("t", "c1", 0.0, 1.0, silo=7), None, SILOS)
    with pytest.raises(InvalidRecord, match="unknown silo 4"):
        route_silo(Transaction("t", "c1", 0.0, 1.0), Customer("c1", 4, 0.0), SILOS)
    with pytest.raises(ValueError, match="no silos"):
        hash_silo("c1", ())
