"""Replay of the real UCI "default of credit card clients" data (Taiwan, 2005).

Pure code (no Kafka). Each CSV row becomes one customer event plus six monthly statement
events (transactions), April 2005 first and September 2005 last. The default label rides
only on the September statement; the earlier ones carry ``label: null``.

Event times: customers on 2005-04-01, statements on the 15th of their month, each plus a
per-customer offset of ``row position`` seconds, so customers interleave deterministically.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.produce.csv_replay import stable_silo
from app.produce.synthetic import Event

__all__ = [
    "UCI_FILE",
    "UCI_PROFILE_ATTRS",
    "UCI_TXN_ATTRS",
    "UciReplay",
    "expected_rows",
    "find_uci_csv",
    "uci_csv_path",
]

logger = logging.getLogger(__name__)

UCI_FILE = "UCI_Credit_Card.csv"
UCI_TXN_ATTRS = ("pay_status", "bill_amt", "pay_amt")
UCI_PROFILE_ATTRS = ("sex", "education", "marriage")
# statement month k (1 = September ... 6 = April) -> calendar month of 2005
_MONTHS = {k: 10 - k for k in range(1, 7)}
_PAY_COL = {k: "PAY_0" if k == 1 else f"PAY_{k}" for k in range(1, 7)}
_LABEL_COLS = ("default.payment.next.month", "default-payment-next-month", "default")


def uci_csv_path(shared_dir: str | Path) -> Path:
    """Where the UCI CSV lives under a shared directory: ``<shared_dir>/data/<UCI_FILE>``."""
    return Path(shared_dir) / "data" / UCI_FILE


def find_uci_csv(*dirs: str | Path) -> Path | None:
    """The first existing UCI CSV in ``dirs`` (directly or under ``data/``), then next to the
    repository (``../shared/data``); None if there is none."""
    repo_shared = Path(__file__).resolve().parents[3] / "shared"
    for base in (*map(Path, dirs), repo_shared):
        for candidate in (base / UCI_FILE, uci_csv_path(base)):
            if candidate.is_file():
                return candidate
    return None


def _epoch(month: int, day: int) -> float:
    return datetime(2005, month, day, tzinfo=UTC).timestamp()


_CUSTOMER_TS = _epoch(4, 1)
_STATEMENT_TS = {k: _epoch(m, 15) for k, m in _MONTHS.items()}


def _one_hot(row: dict[str, str], name: str) -> int:
    """A category either from its own column or from one-hot ``NAME_<i>`` columns."""
    if name in row:
        return int(float(row[name]))
    prefix = f"{name}_"
    hot = [
        int(col[len(prefix) :])
        for col, v in row.items()
        if col.startswith(prefix) and col[len(prefix) :].isdigit() and float(v or 0) == 1
    ]
    return hot[0] if hot else 0


def _read(path: Path, limit: int | None) -> tuple[str, list[dict[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"UCI CSV {path} does not exist.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        label = next((c for c in _LABEL_COLS if c in fields), None)
        missing = [c for c in ("ID", "LIMIT_BAL", "SEX", "AGE", "BILL_AMT1") if c not in fields]
        if label is None or missing:
            raise ValueError(f"{path.name} is not the UCI credit card CSV (missing {missing}).")
        rows: list[dict[str, str]] = []
        for row in reader:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(row)
    return label, rows


def _txn_id(cid: str, k: int) -> str:
    return f"{cid}-2005{_MONTHS[k]:02d}"


class UciReplay:
    """Customer and statement events of the UCI credit card data.

    Parameters
    ----------
    path : the CSV (see :func:`find_uci_csv`).
    n_silos : silos for ``stable_silo(customer_id, n_silos)``.
    limit : use only the first ``limit`` customers (rows); None = all 30,000.
    silo_fn : custom ``customer_id -> silo``; overrides the hash.
    """

    def __init__(
        self,
        path: str | Path,
        n_silos: int = 3,
        limit: int | None = None,
        silo_fn: Callable[[str], int] | None = None,
    ) -> None:
        self.path, self.limit = Path(path), limit
        self.silo_fn = silo_fn or (lambda cid: stable_silo(cid, n_silos))

    def events(self) -> Iterator[Event]:
        """All customers (in row order), then the statements month by month, in time order."""
        label_col, rows = _read(self.path, self.limit)
        people: list[tuple[str, int, dict[str, str]]] = []
        for pos, row in enumerate(rows):
            cid = f"uci-{int(float(row['ID']))}"
            silo = self.silo_fn(cid)
            people.append((cid, silo, row))
            yield (
                "customer",
                cid,
                {
                    "customer_id": cid,
                    "silo": silo,
                    "ts": _CUSTOMER_TS + pos,
                    "age": int(float(row["AGE"])),
                    "credit_limit": float(row["LIMIT_BAL"]),
                    "home_country": "TW",
                    "attrs": {
                        "sex": float(row["SEX"]),
                        "education": float(_one_hot(row, "EDUCATION")),
                        "marriage": float(_one_hot(row, "MARRIAGE")),
                    },
                },
            )
        for k in range(6, 0, -1):
            base = _STATEMENT_TS[k]
            for pos, (cid, silo, row) in enumerate(people):
                bill = float(row[f"BILL_AMT{k}"])
                value: dict[str, Any] = {
                    "txn_id": _txn_id(cid, k),
                    "customer_id": cid,
                    "ts": base + pos,
                    "amount": max(bill, 0.0),
                    "merchant_category": "statement",
                    "channel": "transfer",
                    "country": "TW",
                    "silo": silo,
                    "label": int(float(row[label_col])) if k == 1 else None,
                    "attrs": {
                        "pay_status": float(row[_PAY_COL[k]]),
                        "bill_amt": bill,
                        "pay_amt": float(row[f"PAY_AMT{k}"]),
                    },
                }
                yield "transaction", cid, value


def expected_rows(
    path: str | Path, limit: int | None = None, n_silos: int = 3
) -> dict[str, dict[str, Any]]:
    """What every joined statement row must contain, read straight from the CSV.

    Parameters
    ----------
    path, limit, n_silos : as for :class:`UciReplay`.

    Returns
    -------
    dict
        ``txn_id -> {customer_id, silo, ts, amount, label, age, credit_limit, sex,
        education, marriage, pay_status, bill_amt, pay_amt}``.
    """
    label_col, rows = _read(Path(path), limit)
    out: dict[str, dict[str, Any]] = {}
    for pos, row in enumerate(rows):
        cid = f"uci-{int(float(row['ID']))}"
        profile = {
            "customer_id": cid,
            "silo": stable_silo(cid, n_silos),
            "age": int(row["AGE"]),
            "credit_limit": float(row["LIMIT_BAL"]),
            "sex": float(row["SEX"]),
            "education": float(_one_hot(row, "EDUCATION")),
            "marriage": float(_one_hot(row, "MARRIAGE")),
        }
        for k in range(1, 7):
            out[_txn_id(cid, k)] = {
                **profile,
                "ts": _STATEMENT_TS[k] + pos,
                "amount": max(float(row[f"BILL_AMT{k}"]), 0.0),
                "label": int(row[label_col]) if k == 1 else None,
                "pay_status": float(row[_PAY_COL[k]]),
                "bill_amt": float(row[f"BILL_AMT{k}"]),
                "pay_amt": float(row[f"PAY_AMT{k}"]),
            }
    return out
