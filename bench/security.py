"""What security costs: one benchmark run against a secure and an insecure broker.

``bench stream``, ``bench fl`` and ``bench chat`` take ``--security both`` (their default):
the same measurement runs against a temporary PLAINTEXT broker (Flower ``--insecure`` too,
for ``bench fl``) and a temporary secure one (SASL_SSL with SCRAM-SHA-512, ACLs, every
component as its own principal; Flower with TLS and SuperNode authentication), and the
figures are compared: ``security_cost`` is the fraction of each figure security takes
(0.10 = 10 % fewer events/s, or 10 % more ms); the issue's target is at most 0.15 each.

Why interleaved: with one insecure leg followed by one secure leg, whatever changed on this
shared 2-core box between the two (another engineer's tests, page cache, JIT) was charged
to security (chat p50 +25..135 % that way; +1 % on a quiet box, same code). Both brokers
run for the whole comparison and the legs alternate in ABBA order (insecure, secure,
secure, insecure, ...), so drift hits both modes alike; an optional first pair of legs is
a warm-up whose figures are kept in the output but not compared. Each figure's cost is
computed from the medians of its legs; ``paired_cost`` (the median of the costs of
neighbouring pairs) is reported too, as a check that does not depend on slow drift, and
``spread`` (per figure, the larger of the two modes' (max - min) / median over their legs)
says how much the same figure moved between legs of the same mode. ``above_noise`` lists
the figures whose cost is over the target *and* larger than that spread: a cost within
the spread was not measured at all on that run (on a loaded box the legs of one mode
differ by 2-5x, also in figures security cannot touch, such as local JAX training).
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.kafka.broker import LocalBroker
from app.kafka.principals import principal_names
from app.kafka.security import PLAINTEXT, KafkaIdentity, current, use
from app.ports import free_port
from bench.cpu import process_cpu_s
from topics import chat_tenants

__all__ = [
    "MAX_COST",
    "TemporaryBroker",
    "broker_cpu_s",
    "compare_security",
    "leg_order",
    "temporary_broker",
]

logger = logging.getLogger(__name__)

MAX_COST = 0.15
MODES = ("insecure", "secure")
_acted_on: TemporaryBroker | None = None  # set by acting_on, read by broker_cpu_s


@dataclass(frozen=True)
class TemporaryBroker:
    """A running benchmark broker and who acts on it (its admin, or anonymous)."""

    bootstrap: str
    secure: bool
    identity: KafkaIdentity
    clients_dir: Path
    pid: int | None = None  # the broker's JVM


@contextlib.contextmanager
def _started(cache_dir: Path, secure: bool, silos: int) -> Iterator[TemporaryBroker]:
    with tempfile.TemporaryDirectory(prefix="fedstream-bench-broker-") as tmp:
        ids = list(range(silos))
        broker = LocalBroker(
            Path(tmp), cache_dir, port=free_port(), controller_port=free_port(), secure=secure,
            principals=principal_names(ids, chat_tenants(ids)),
        )  # fmt: skip
        try:
            broker.start(timeout_s=180)
            identity = broker.identity() if secure else PLAINTEXT
            yield TemporaryBroker(broker.bootstrap, secure, identity, broker.clients_dir,
                                  broker.pid())  # fmt: skip
        finally:
            broker.stop()


@contextlib.contextmanager
def acting_on(broker: TemporaryBroker) -> Iterator[str]:
    """This process acts as ``broker``'s admin and ``fedstream`` subprocesses find their
    principals there (FEDSTREAM_KAFKA_CLIENTS); both are restored afterwards."""
    global _acted_on
    before, env_before = current(), os.environ.get("FEDSTREAM_KAFKA_CLIENTS")
    acted_before = _acted_on
    # an insecure leg must not pick up another broker's credentials
    os.environ["FEDSTREAM_KAFKA_CLIENTS"] = str(broker.clients_dir)
    use(broker.identity)
    _acted_on = broker
    try:
        yield broker.bootstrap
    finally:
        use(before)
        _acted_on = acted_before
        if env_before is None:
            os.environ.pop("FEDSTREAM_KAFKA_CLIENTS", None)
        else:
            os.environ["FEDSTREAM_KAFKA_CLIENTS"] = env_before


@contextlib.contextmanager
def temporary_broker(cache_dir: Path, secure: bool, silos: int = 3) -> Iterator[str]:
    """A fresh local broker for one measurement, acted on as its admin (see acting_on)."""
    with _started(cache_dir, secure, silos) as broker, acting_on(broker) as bootstrap:
        yield bootstrap


def _broker_cpu(broker: TemporaryBroker) -> float | None:
    return process_cpu_s(broker.pid) if broker.pid else None


def broker_cpu_s() -> float | None:
    """CPU seconds used so far by the broker this process acts on (None outside
    :func:`acting_on`): a leg can charge the broker only for its measured phases."""
    return _broker_cpu(_acted_on) if _acted_on is not None else None


def leg_order(repeats: int, warmup: bool) -> list[tuple[str, bool]]:
    """``(mode, is_warmup)`` of every leg: an optional warm-up pair, then ``repeats`` pairs
    in ABBA order so that neither mode always runs first."""
    legs = [(mode, True) for mode in MODES] if warmup else []
    for i in range(repeats):
        legs += [(mode, False) for mode in (MODES if i % 2 == 0 else MODES[::-1])]
    return legs


def _pick(result: Mapping[str, Any], path: str) -> float | None:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def _cost(on: float | None, off: float | None, higher_is_better: bool) -> float | None:
    if on is None or off is None or off == 0:
        return None
    return round((off - on) / off if higher_is_better else (on - off) / off, 3)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _spread(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    mid = statistics.median(present) if present else 0
    return round((max(present) - min(present)) / mid, 3) if len(present) > 1 and mid else None


def summarize(
    runs: Mapping[str, list[dict[str, Any]]], figures: Mapping[str, bool]
) -> dict[str, Any]:
    """Medians per mode, the cost of each figure from them, the paired cost check and the
    spread between legs of one mode (see the module docstring)."""
    medians = {m: {k: _median([_pick(r, k) for r in runs[m]]) for k in figures} for m in MODES}
    cost = {k: _cost(medians["secure"][k], medians["insecure"][k], hi) for k, hi in figures.items()}
    pairs = list(zip(runs["insecure"], runs["secure"], strict=False))
    paired = {
        k: _median([_cost(_pick(on, k), _pick(off, k), hi) for off, on in pairs])
        for k, hi in figures.items()
    }
    spread: dict[str, float | None] = {}
    for k in figures:
        per_mode = [
            x for x in (_spread([_pick(r, k) for r in runs[m]]) for m in MODES) if x is not None
        ]
        spread[k] = max(per_mode) if per_mode else None
    above_noise = []
    for k, c in cost.items():
        noise = spread[k]
        if c is not None and c > MAX_COST and (noise is None or c > noise):
            above_noise.append(k)
    return {
        "security_cost": cost,
        "paired_cost": {k: None if v is None else round(v, 3) for k, v in paired.items()},
        "spread": spread,
        "above_noise": above_noise,
        "secure": medians["secure"],
        "insecure": medians["insecure"],
        "legs": {m: [{k: _pick(r, k) for k in figures} for r in runs[m]] for m in MODES},
        "security_target": MAX_COST,
        "security_target_met": all(c is not None and c <= MAX_COST for c in cost.values()),
    }


def compare_security(
    run: Callable[[str, bool], dict[str, Any]],
    cache_dir: Path,
    figures: Mapping[str, bool],
    silos: int = 3,
    repeats: int = 3,
    warmup: bool = True,
    broker_per_leg: bool = False,
) -> dict[str, Any]:
    """``run(bootstrap, secure)`` on an insecure and a secure temporary broker, interleaved
    (see :func:`leg_order`). By default both brokers run for the whole comparison and each
    serves every leg of its mode; with ``broker_per_leg`` every leg starts a fresh broker
    of its mode and it is the only one up (slower: one broker start per leg).

    ``figures`` maps a (dotted) key of the result to True when higher is better.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    warm: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    legs = leg_order(repeats, warmup)
    with contextlib.ExitStack() as stack:
        shared = {} if broker_per_leg else {
            m: stack.enter_context(_started(cache_dir, m == "secure", silos)) for m in MODES
        }  # fmt: skip
        for i, (mode, is_warmup) in enumerate(legs, 1):
            state = ("on" if mode == "secure" else "off") + (" (warm-up)" if is_warmup else "")
            logger.info("leg %d/%d: security %s", i, len(legs), state)
            with contextlib.ExitStack() as leg_stack:
                broker = shared.get(mode) or leg_stack.enter_context(
                    _started(cache_dir, mode == "secure", silos)
                )
                result = _leg(run, broker)
            (warm if is_warmup else runs)[mode].append(result)
    doc = summarize(runs, figures)
    doc.update({"repeats": repeats, "order": [m for m, w in legs if not w], "runs": runs,
                "warmup": warm if warmup else None,
                "brokers": "one per leg" if broker_per_leg else "one per mode"})  # fmt: skip
    return doc


def _leg(run: Callable[[str, bool], dict[str, Any]], broker: TemporaryBroker) -> dict[str, Any]:
    with acting_on(broker) as bootstrap:
        load_before, t0 = os.getloadavg()[0], time.monotonic()
        cpu0 = _broker_cpu(broker)
        result = run(bootstrap, broker.secure)
    # the box is shared: each leg says how busy it was (1-min load average) and what
    # share of a core its broker used (TLS and SASL cost the broker, too)
    result["load_avg"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    cpu1 = _broker_cpu(broker)
    if cpu0 is not None and cpu1 is not None:
        result["broker_cpu_share"] = round((cpu1 - cpu0) / (time.monotonic() - t0), 3)
    return result
