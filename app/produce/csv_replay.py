"""Replay any CSV of transactions as schema-valid events, in event-time order.

Pure code (no Kafka). The file is read once, sorted by time (stably: ties keep file order)
and turned into transaction events; each customer key first seen gets a minimal customer
event (silo and ts only) just before its first transaction, unless ``emit_customers`` is off.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from app.produce.synthetic import Event

__all__ = ["CsvReplay", "CsvReplayError", "TimeFormat", "parse_time", "sanitise", "stable_silo"]

logger = logging.getLogger(__name__)

TimeFormat = Literal["epoch", "iso", "auto"]
MAX_ATTRS = 64
_NAME_RE = re.compile(r"[^a-z0-9_]+")


class CsvReplayError(ValueError):
    """A CSV that cannot be replayed (missing column, unparsable value)."""


def stable_silo(key: str, n_silos: int) -> int:
    """The silo of a key: ``zlib.crc32(key) % n_silos`` (stable across runs and hosts)."""
    return zlib.crc32(key.encode("utf-8")) % n_silos


def sanitise(name: str) -> str:
    """A column name as an attribute name: lower case, ``[a-z0-9_]``, at most 32 chars."""
    cleaned = _NAME_RE.sub("_", name.strip().lower()).strip("_")[:32]
    return cleaned or "col"


def parse_time(text: str, time_format: TimeFormat = "auto") -> float:
    """Epoch seconds from epoch seconds or ISO 8601 text (naive times are UTC).

    Raises
    ------
    ValueError
        When the text is neither (for the chosen format).
    """
    text = text.strip()
    if time_format in ("epoch", "auto"):
        try:
            value = float(text)
        except ValueError:
            if time_format == "epoch":
                raise
        else:
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{text!r} is not a non-negative epoch time")
            return value
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class CsvReplay:
    """Transactions from a CSV file.

    Parameters
    ----------
    path : the CSV file (with a header row).
    time_col, key_col : event time and customer key columns.
    label_col : 0/1 label column (empty cells become null); None = no labels.
    silo_col : integer silo column; None = ``stable_silo(key, n_silos)``.
    n_silos : number of silos for hashing.
    amount_col : amount column (negative amounts become 0); None = a column named
        ``amount`` (any case) if there is one, else 0.
    txn_id_col : transaction id column; None = ``<file stem>-<row number>``.
    time_format : ``epoch`` seconds, ``iso`` 8601 or ``auto`` (try epoch, then ISO).
    emit_customers : emit a minimal customer event before each key's first transaction.

    Other columns whose non-empty cells are all numbers pass into ``attrs`` (sanitised
    names, at most 64; empty, NaN and infinite cells are left out); non-numeric columns
    are ignored.
    """

    def __init__(
        self,
        path: str | Path,
        time_col: str,
        key_col: str,
        label_col: str | None = None,
        silo_col: str | None = None,
        n_silos: int = 3,
        amount_col: str | None = None,
        txn_id_col: str | None = None,
        time_format: TimeFormat = "auto",
        emit_customers: bool = True,
    ) -> None:
        if n_silos < 1:
            raise CsvReplayError(f"n_silos must be >= 1, got {n_silos}.")
        if time_format not in ("epoch", "iso", "auto"):
            raise CsvReplayError(f"time_format must be epoch, iso or auto, not {time_format!r}.")
        self.path = Path(path)
        self.time_col, self.key_col = time_col, key_col
        self.label_col, self.silo_col, self.n_silos = label_col, silo_col, n_silos
        self.amount_col, self.txn_id_col = amount_col, txn_id_col
        self.time_format: TimeFormat = time_format
        self.emit_customers = emit_customers
        self.silo_of: Callable[[str], int] = lambda key: stable_silo(key, n_silos)

    def _read(self) -> tuple[list[str], list[list[str]]]:
        if not self.path.is_file():
            raise CsvReplayError(f"CSV file {self.path} does not exist.")
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise CsvReplayError(f"CSV file {self.path} is empty (no header row).")
            rows = [row for row in reader if row]
        return [h.strip() for h in header], rows

    def _column(self, header: list[str], name: str | None, role: str) -> int | None:
        if name is None:
            return None
        if name not in header:
            raise CsvReplayError(
                f"{role} column {name!r} not found in {self.path.name} "
                f"(columns: {', '.join(header)})."
            )
        return header.index(name)

    def events(self) -> Iterator[Event]:
        """Customer and transaction events in non-decreasing event time.

        Raises
        ------
        CsvReplayError
            For a missing column, an unparsable time, label or silo, or an empty key.
        """
        header, rows = self._read()
        t_i = self._column(header, self.time_col, "time")
        k_i = self._column(header, self.key_col, "key")
        l_i = self._column(header, self.label_col, "label")
        s_i = self._column(header, self.silo_col, "silo")
        id_i = self._column(header, self.txn_id_col, "txn id")
        amount_col = self.amount_col or next((h for h in header if h.lower() == "amount"), None)
        a_i = self._column(header, amount_col, "amount")
        assert t_i is not None and k_i is not None
        used = {i for i in (t_i, k_i, l_i, s_i, id_i, a_i) if i is not None}
        attr_cols = self._numeric_columns(header, rows, used)
        times: list[float] = []
        for line, row in enumerate(rows, 2):
            try:
                times.append(parse_time(row[t_i], self.time_format))
            except (ValueError, IndexError):
                cell = row[t_i] if t_i < len(row) else ""
                raise CsvReplayError(
                    f"line {line} of {self.path.name}: cannot parse time {cell!r} in column "
                    f"{self.time_col!r} as {self.time_format} (epoch seconds or ISO 8601)."
                ) from None
        order = sorted(range(len(rows)), key=times.__getitem__)
        known: set[str] = set()
        stem = sanitise(self.path.stem)[:40]
        for r in order:
            row, line, ts = rows[r], r + 2, times[r]
            key = row[k_i].strip() if k_i < len(row) else ""
            if not key or len(key) > 64:
                raise CsvReplayError(f"line {line}: key {key!r} must have 1 to 64 characters.")
            silo = self._silo(row, s_i, key, line)
            if self.emit_customers and key not in known:
                known.add(key)
                yield "customer", key, {"customer_id": key, "silo": silo, "ts": ts}
            value: dict[str, Any] = {
                "txn_id": (row[id_i].strip()[:64] or f"{stem}-{line}")
                if id_i is not None
                else f"{stem}-{line}",
                "customer_id": key,
                "ts": ts,
                "amount": self._amount(row, a_i),
                "silo": silo,
            }
            if l_i is not None:
                value["label"] = self._label(row[l_i], line)
            attrs = {name: v for i, name in attr_cols if (v := _number(row[i])) is not None}
            if attrs:
                value["attrs"] = attrs
            yield "transaction", key, value

    def _numeric_columns(
        self, header: list[str], rows: list[list[str]], used: set[int]
    ) -> list[tuple[int, str]]:
        """``(index, attr name)`` of the columns whose non-empty cells are all numbers."""
        out: list[tuple[int, str]] = []
        names: set[str] = set()
        for i, name in enumerate(header):
            if i in used:
                continue
            cells = [row[i].strip() for row in rows if i < len(row) and row[i].strip()]
            if not cells or not all(_is_number(c) for c in cells):
                logger.debug("column %r is not numeric; ignored", name)
                continue
            attr = sanitise(name)
            while attr in names:
                attr = f"{attr[:28]}_{i}"
            names.add(attr)
            out.append((i, attr))
        if len(out) > MAX_ATTRS:
            logger.warning(
                "%d numeric columns; only the first %d become attrs", len(out), MAX_ATTRS
            )
        return out[:MAX_ATTRS]

    def _silo(self, row: list[str], s_i: int | None, key: str, line: int) -> int:
        if s_i is None:
            return self.silo_of(key)
        value = _number(row[s_i]) if s_i < len(row) else None
        if value is None or value < 0 or value != int(value):
            cell = row[s_i] if s_i < len(row) else ""
            raise CsvReplayError(f"line {line}: silo {cell!r} is not a non-negative integer.")
        return int(value)

    @staticmethod
    def _amount(row: list[str], a_i: int | None) -> float:
        if a_i is None or a_i >= len(row):
            return 0.0
        value = _number(row[a_i])
        return 0.0 if value is None else min(max(value, 0.0), 1e9)

    def _label(self, text: str, line: int) -> int | None:
        text = text.strip().lower()
        if text in ("", "null", "none", "nan"):
            return None
        if text in ("true", "yes"):
            return 1
        if text in ("false", "no"):
            return 0
        value = _number(text)
        if value is None:
            raise CsvReplayError(f"line {line}: label {text!r} is not 0/1.")
        return 1 if value != 0 else 0
