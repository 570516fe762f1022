"""The labelled streams of ``bench quality``, as per-silo rows in event-time order.

- ``synthetic``: the realistic synthetic bank preset (``--preset`` for another one),
  through the stream worker's own logic (:func:`app.features.reference.run_reference`:
  validation, join, windows, features), silos as the bank assigns them (non-IID).
- ``uci``: the real UCI credit-default data (``shared/data/UCI_Credit_Card.csv``) replayed
  as the worker sees it (``fedstream produce uci`` + ``worker --uci``), with the
  defaulters subsampled to about 1 % of the labelled customers (whole customers dropped).
- ``shuttle``: the real UCI Statlog (Shuttle) sensor stream bundled in the ``river``
  package (ODDS anomaly version, 49,097 rows), anomalies subsampled to about 1 %, rows
  in file order, silos by a hash of the row number. No event pipeline: the 9 readings
  are the features.
"""

from __future__ import annotations

import csv
import gzip
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.features.reference import run_reference
from app.features.spec import FeatureSpec
from app.fl.simulate import SiloStream

__all__ = ["Stream", "load_stream", "shuttle_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stream:
    """A named stream: its silos' rows and the width of a row."""

    name: str
    silos: list[SiloStream]
    n_features: int
    note: str

    @property
    def labelled(self) -> int:
        return int(sum((s.y >= 0).sum() for s in self.silos))

    @property
    def positives(self) -> int:
        return int(sum((s.y > 0).sum() for s in self.silos))


def _through_worker(
    events: Iterable[tuple[str, str, dict[str, Any]]], spec: FeatureSpec, n_silos: int
) -> list[SiloStream]:
    """Feature rows per silo, as the stream worker would emit them, with global order."""
    encoded: list[tuple[str, bytes, bytes]] = []
    position: dict[str, int] = {}
    for kind, key, value in events:
        if kind == "transaction":
            position[str(value["txn_id"])] = len(position)
        encoded.append((kind, key.encode(), orjson.dumps(value)))
    out = run_reference(encoded, spec, list(range(n_silos)))
    silos = []
    for s in range(n_silos):
        X, y = out.arrays(s, spec.n_features)
        order = np.array([position[t] for t, _row, _label in out.rows[s]], dtype=np.int64)
        silos.append(SiloStream(X, y, order))
    return silos


def _synthetic(n_silos: int, customers: int, days: float, seed: int, preset: str) -> Stream:
    from app.produce.synthetic import SyntheticBank

    bank = SyntheticBank(customers=customers, silos=n_silos, seed=seed, preset=preset)
    silos = _through_worker(bank.events(duration_s=days * 86_400.0), FeatureSpec(), n_silos)
    return Stream(
        "synthetic",
        silos,
        FeatureSpec().n_features,
        f"{preset} synthetic bank, {customers} customers, {days:g} days",
    )


def _uci(n_silos: int, positive_rate: float, seed: int) -> Stream:
    from app.produce.uci import UCI_PROFILE_ATTRS, UCI_TXN_ATTRS, UciReplay, find_uci_csv

    path = find_uci_csv(*_shared_dirs())
    if path is None:
        raise FileNotFoundError("UCI_Credit_Card.csv not found in shared/data beside the repo")
    events = list(UciReplay(path, n_silos=n_silos).events())
    labels = {
        str(v["customer_id"]): int(v["label"])
        for kind, _k, v in events
        if kind == "transaction" and v.get("label") is not None
    }
    pos = sorted(c for c, lab in labels.items() if lab == 1)
    n_neg = len(labels) - len(pos)
    keep_n = round(positive_rate * n_neg / (1.0 - positive_rate))
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(pos, size=min(keep_n, len(pos)), replace=False).tolist())
    dropped = set(pos) - keep
    kept = [e for e in events if e[1] not in dropped]
    spec = FeatureSpec(txn_attrs=UCI_TXN_ATTRS, profile_attrs=UCI_PROFILE_ATTRS)
    return Stream(
        "uci",
        _through_worker(kept, spec, n_silos),
        spec.n_features,
        f"UCI credit default, defaulters subsampled to {positive_rate:.0%} ({len(keep)} kept)",
    )


def _shared_dirs() -> list[Path]:
    repo = Path(__file__).resolve().parents[1]
    return [repo.parent / "shared", repo / "shared"]


def shuttle_path() -> Path:
    """The Shuttle CSV inside the installed ``river`` package."""
    import river.datasets

    return Path(river.datasets.__file__).parent / "shuttle.csv.gz"


def _shuttle(n_silos: int, positive_rate: float, seed: int) -> Stream:
    with gzip.open(shuttle_path(), "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    data = np.array(rows[1:], dtype=np.float64)
    X, y = data[:, :-1].astype(np.float32), data[:, -1].astype(np.float32)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y > 0)
    keep_n = round(positive_rate * (y.size - pos.size) / (1.0 - positive_rate))
    drop = np.setdiff1d(pos, rng.choice(pos, size=min(keep_n, pos.size), replace=False))
    mask = np.ones(y.size, bool)
    mask[drop] = False
    X, y = X[mask], y[mask]
    order = np.arange(y.size)
    silo = np.array([zlib.crc32(f"row-{i}".encode()) % n_silos for i in range(y.size)])
    silos = [SiloStream(X[silo == s], y[silo == s], order[silo == s]) for s in range(n_silos)]
    return Stream(
        "shuttle",
        silos,
        int(X.shape[1]),
        f"Statlog Shuttle (river), anomalies subsampled to {positive_rate:.0%}",
    )


def load_stream(
    name: str,
    n_silos: int = 3,
    *,
    customers: int = 2000,
    days: float = 28.0,
    positive_rate: float = 0.01,
    seed: int = 0,
    preset: str = "realistic",
) -> Stream:
    """One of ``synthetic``, ``uci``, ``shuttle`` (see the module docstring)."""
    if name == "synthetic":
        return _synthetic(n_silos, customers, days, seed, preset)
    if name == "uci":
        return _uci(n_silos, positive_rate, seed)
    if name == "shuttle":
        return _shuttle(n_silos, positive_rate, seed)
    raise ValueError(f"unknown stream {name!r}; choose synthetic, uci or shuttle")
