"""Which silo a transaction belongs to.

Rules, in order: the transaction's own ``silo`` if set; else the profile's home silo if
the profile is known; else a stable hash of the customer id (``zlib.crc32``, identical in
every process and Python version, unlike ``hash()``). The result must be configured.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

from app.features.records import Customer, Transaction
from app.features.validation import check_silo

__all__ = ["hash_silo", "route_silo"]

logger = logging.getLogger(__name__)


def hash_silo(customer_id: str, silo_ids: Sequence[int]) -> int:
    """Stable silo of a customer without a profile: ``silo_ids[crc32(id) % len]``.

    ``silo_ids`` must be in the same order in every process (``Settings.silo_ids``).
    """
    if not silo_ids:
        raise ValueError("no silos configured")
    return silo_ids[zlib.crc32(customer_id.encode("utf-8")) % len(silo_ids)]


def route_silo(txn: Transaction, profile: Customer | None, silo_ids: Sequence[int]) -> int:
    """Silo of a transaction.

    Raises
    ------
    InvalidRecord
        If the transaction or profile names a silo that is not in ``silo_ids``.
    """
    if txn.silo is not None:
        return check_silo(txn.silo, silo_ids)
    if profile is not None:
        return check_silo(profile.silo, silo_ids)
    return hash_silo(txn.customer_id, silo_ids)
