"""Replay any CSV of transactions as schema-valid events, in event-time order.

Pure code (no Kafka). The file is read once, sorted by time (stably: ties keep file order)
and turned into transaction events; each customer key first seen gets a minimal customer
event (silo and ts only) just before its first transaction, unless ``emit_customers`` is off.

Files as they come: when not named, the key, time and label columns are looked for by
name (``customer_id``, ``ts``/``time``/``timestamp``..., ``label``/``class``/``fraud``...);
without a key column every row is its own customer; a numeric time column that starts
near 0 is relative seconds, counted from ``start``; numeric columns keep their original
names as ``attrs``. :attr:`CsvReplay.notes` says what was decided, one line each.
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

__all__ = [
    "DEFAULT_START",
    "CsvReplay",
    "CsvReplayError",
    "TimeFormat",
    "parse_time",
    "sanitise",
    "stable_silo",
]

logger = logging.getLogger(__name__)

TimeFormat = Literal["epoch", "iso", "auto"]
MAX_ATTRS = 64
_NAME_RE = re.compile(r"[^a-z0-9_]+")
_KEY_NAMES = ("customer_id", "customer", "client_id", "account_id", "user_id", "card_id", "cc_num")
_TIME_NAMES = ("ts", "time", "timestamp", "datetime", "event_time", "date", "trans_date_trans_time",
               "step")  # fmt: skip
_LABEL_NAMES = ("label", "class", "is_fraud", "fraud", "isfraud", "target", "default", "y")
RELATIVE_BEFORE = 315_532_800.0
"""Numeric times all below this (1980-01-01) are relative seconds, not epoch times."""
DEFAULT_START = 1_704_067_200.0
"""Where relative times start without ``start``: 2024-01-01T00:00:00Z."""


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
    time_col : event time column; None = the first column named like a time (ts, time,
        timestamp, datetime, event_time, date, ..., any case).
    key_col : customer key column; None = a column named like a key (customer_id, ...),
        else every row is its own customer (key ``<file stem>-<line>``).
    label_col : 0/1 label column (empty cells become null); None = a column named like a
        label (label, class, is_fraud, fraud, target, ...) whose cells are all 0/1, if any.
    silo_col : integer silo column; None = ``stable_silo(key, n_silos)``.
    n_silos : number of silos for hashing.
    amount_col : amount column (negative amounts become 0); None = a column named
        ``amount`` (any case) if there is one, else 0.
    txn_id_col : transaction id column; None = ``<file stem>-<row number>``.
    time_format : ``epoch`` seconds, ``iso`` 8601 or ``auto`` (try epoch, then ISO).
    emit_customers : emit a minimal customer event before each key's first transaction.
    start : epoch seconds where a relative time column (numbers below 1980) starts; None =
        2024-01-01T00:00:00Z, with a note that time-of-day features are then meaningless.

    Other columns whose non-empty cells are all numbers pass into ``attrs`` under their
    original names (trimmed to 64 characters; at most 64 columns; empty, NaN and infinite
    cells are left out); non-numeric columns are ignored.
    """

    def __init__(
        self,
        path: str | Path,
        time_col: str | None = None,
        key_col: str | None = None,
        label_col: str | None = None,
        silo_col: str | None = None,
        n_silos: int = 3,
        amount_col: str | None = None,
        txn_id_col: str | None = None,
        time_format: TimeFormat = "auto",
        emit_customers: bool = True,
        start: float | None = None,
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
        self.start = start
        self.silo_of: Callable[[str], int] = lambda key: stable_silo(key, n_silos)
        self.notes: list[str] = []
        """What :meth:`events` decided about the file (key, time, label, attrs)."""
        self.attr_names: list[str] = []
        """The ``attrs`` names, in column order (for ``FEDSTREAM_TXN_ATTRS``)."""

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

    @staticmethod
    def _named(header: list[str], names: tuple[str, ...]) -> str | None:
        """The first header cell named like one of ``names`` (any case, ``-``/space = ``_``)."""
        simple = {re.sub(r"[\s\-.]+", "_", h.strip().lower()): h for h in header}
        return next((simple[n] for n in names if n in simple), None)

    def _detect(self, header: list[str], rows: list[list[str]]) -> None:
        """Fill in the key, time and label columns that were not named (see the class doc)."""
        if self.time_col is None:
            self.time_col = self._named(header, _TIME_NAMES)
            if self.time_col is None:
                raise CsvReplayError(
                    f"no time column found in {self.path.name}: pass --time-col "
                    f"(columns: {', '.join(header)})."
                )
            self.notes.append(f"time: column {self.time_col!r} (found by its name)")
        else:
            self.notes.append(f"time: column {self.time_col!r}")
        if self.key_col is None:
            self.key_col = self._named(header, _KEY_NAMES)
            if self.key_col is None:
                self.notes.append(
                    "key: no key column: every row is its own customer (key = <file>-<line>);"
                    " pass --key-col to group rows"
                )
            else:
                self.notes.append(f"key: column {self.key_col!r} (found by its name)")
        else:
            self.notes.append(f"key: column {self.key_col!r}")
        if self.label_col is None:
            found = self._named(header, _LABEL_NAMES)
            if found is not None and found not in (self.time_col, self.key_col):
                i = header.index(found)
                cells = {row[i].strip().lower() for row in rows if i < len(row)}
                if cells and cells <= {"0", "1", "0.0", "1.0", "", "true", "false"}:
                    self.label_col = found
                    self.notes.append(f"label: column {found!r} (found by its name, 0/1)")
            if self.label_col is None:
                self.notes.append("label: none (rows are unlabelled); pass --label-col")
        else:
            self.notes.append(f"label: column {self.label_col!r}")

    def events(self) -> Iterator[Event]:
        """Customer and transaction events in non-decreasing event time.

        Raises
        ------
        CsvReplayError
            For a missing column, an unparsable time, label or silo, or an empty key.
        """
        header, rows = self._read()
        self.notes, self.attr_names = [], []
        self._detect(header, rows)
        t_i = self._column(header, self.time_col, "time")
        k_i = self._column(header, self.key_col, "key")
        l_i = self._column(header, self.label_col, "label")
        s_i = self._column(header, self.silo_col, "silo")
        id_i = self._column(header, self.txn_id_col, "txn id")
        amount_col = self.amount_col or next((h for h in header if h.lower() == "amount"), None)
        a_i = self._column(header, amount_col, "amount")
        assert t_i is not None
        used = {i for i in (t_i, k_i, l_i, s_i, id_i, a_i) if i is not None}
        attr_cols = self._numeric_columns(header, rows, used)
        self.attr_names = [name for _, name in attr_cols]
        if attr_cols:
            self.notes.append(f"attrs: {', '.join(repr(n) for n in self.attr_names)} (as "
                              f"txn.<name> features: FEDSTREAM_TXN_ATTRS='"
                              f"{','.join(self.attr_names)}')")  # fmt: skip
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
        times = self._absolute(times)
        order = sorted(range(len(rows)), key=times.__getitem__)
        known: set[str] = set()
        stem = sanitise(self.path.stem)[:40]
        for r in order:
            row, line, ts = rows[r], r + 2, times[r]
            key = f"{stem}-{line}" if k_i is None else (row[k_i].strip() if k_i < len(row) else "")
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

    def _absolute(self, times: list[float]) -> list[float]:
        """Relative times (all below 1980) counted from ``start``; the rest as they are."""
        if not times or max(times) >= RELATIVE_BEFORE:
            return times
        start = DEFAULT_START if self.start is None else self.start
        when = datetime.fromtimestamp(start, UTC).isoformat()
        if self.start is None:
            self.notes.append(
                f"WARNING time: column {self.time_col!r} is relative (from {min(times):g} s), "
                f"counted from {when}; pass --start with the real start, else the hour and "
                "night features are meaningless"
            )
        else:
            self.notes.append(f"time: relative seconds from --start {when}")
        return [start + t for t in times]

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
            attr = name.strip()[:64] or f"col_{i}"  # the original name, as the user knows it
            while attr in names:
                attr = f"{attr[:58]}_{i}"
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
