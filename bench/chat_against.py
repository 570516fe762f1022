"""``bench chat --against REV``: this chat path against the chat path of another revision.

Issue 12 asks to keep the reply latency within 10 % of the chat path before the per-tenant
chatbot and Kafka security. That path cannot talk to a secure broker, so three arms run
in one comparison, each leg the same measurement (:mod:`bench.chat_leg`: this tree's
``bench chat`` leg, same load, chat rate, warm-up rule and phases) in its own process:

- ``reference``: the worker, chat client and catalogue of ``REV`` (its tree exported and
  put first on ``PYTHONPATH``, same virtualenv, so the same library versions), on a
  PLAINTEXT broker;
- ``insecure``: this tree's, on a PLAINTEXT broker (the same one);
- ``secure``: this tree's, on a secure broker (SASL_SSL/SCRAM, ACLs; the default).

Both brokers run for the whole comparison. An optional warm-up leg per arm comes first;
then the arms alternate in mirrored rounds (A B C, C B A, ...) so that slow drift of the
box's load hits every arm alike. Figures: per arm, percentiles over the replies of all its
measured legs together (``pooled``), medians of the per-leg figures, and each arm's cost
against the reference (``vs_reference``; 0.10 = 10 % slower) and security's cost
(``security_cost``, secure against insecure).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.demo.report import latency_percentiles
from bench.against import export_revision
from bench.cpu import process_cpu_s
from bench.security import _started, acting_on

__all__ = ["ARMS", "arm_order", "compare_chat_revisions", "summarize_arms"]

logger = logging.getLogger(__name__)

ARMS = ("reference", "insecure", "secure")
TARGET = 0.10  # issue 12, item 5: within 10 % of the reply latency before it
LEG_FIGURES = ("chat_p50_ms", "chat_p99_ms", "stream_eps_with_chat", "worker_cpu_ms_per_1k",
               "broker_cpu_share", "warmup_s")  # fmt: skip


def arm_order(rounds: int, warmup: bool) -> list[tuple[str, bool]]:
    """``(arm, is_warmup)`` of every leg: an optional warm-up leg per arm, then ``rounds``
    rounds of all arms, every other round mirrored."""
    legs = [(arm, True) for arm in ARMS] if warmup else []
    for r in range(rounds):
        legs += [(arm, False) for arm in (ARMS if r % 2 == 0 else ARMS[::-1])]
    return legs


def _figures(leg: dict[str, Any]) -> dict[str, Any]:
    res = leg["result"]
    out = {k: res.get(k) for k in (*LEG_FIGURES, "load_avg")}
    for part in ("event_to_enriched_ms", "chat_to_worker_ms", "chat_from_worker_ms"):
        out[f"{part}.p50"] = (res.get(part) or {}).get("p50")
    return out


def _cost(value: float | None, base: float | None) -> float | None:
    return round((value - base) / base, 3) if value is not None and base else None


def summarize_arms(legs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pooled percentiles, leg medians and costs (module docstring) of measured legs, each
    ``{"result": ..., "samples": {"total": [...], ...}}``."""
    pooled = {
        arm: latency_percentiles([v for leg in legs[arm] for v in leg["samples"].get("total", [])])
        for arm in ARMS
    }
    medians: dict[str, dict[str, float | None]] = {}
    for arm in ARMS:
        medians[arm] = {}
        for key in LEG_FIGURES:
            values = [float(v) for leg in legs[arm] if (v := leg["result"].get(key)) is not None]
            medians[arm][key] = round(statistics.median(values), 3) if values else None
    pct = ("p50", "p95", "p99")
    vs_ref = {arm: {k: _cost(pooled[arm][k], pooled["reference"][k]) for k in pct}
              for arm in ("insecure", "secure")}  # fmt: skip
    return {
        "pooled": pooled,
        "leg_medians": medians,
        "legs": {arm: [_figures(leg) for leg in legs[arm]] for arm in ARMS},
        "vs_reference": vs_ref,
        "security_cost": {k: _cost(pooled["secure"][k], pooled["insecure"][k]) for k in pct},
        "target_vs_reference": TARGET,
        "target_met": all(c is not None and c <= TARGET for c in vs_ref["secure"].values()),
    }


def _run_leg(bootstrap: str, tree: Path | None, knobs: dict[str, Any], work: Path) -> Any:
    out = work / "leg.json"
    cmd = [sys.executable, str(Path(__file__).with_name("chat_leg.py")),
           "--bootstrap", bootstrap, "--out", str(out)]  # fmt: skip
    for key, value in knobs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(cmd, env=env)
    try:
        code = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.terminate()  # the leg unwinds and stops its worker
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
            if proc.poll() is None:
                proc.kill()
    if code != 0:
        raise RuntimeError(f"a chat leg failed (exit {code}): {' '.join(cmd)}")
    return json.loads(out.read_text())


def compare_chat_revisions(
    rev: str, cache_dir: Path, silos: int, rounds: int, warmup: bool, **knobs: Any
) -> dict[str, Any]:
    """The three arms of the module docstring; ``knobs`` are ``bench chat``'s rate,
    chat_rate, seconds, customers."""
    measured: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    warm: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="fedstream-bench-chat-") as tmp, \
            contextlib.ExitStack() as stack:  # fmt: skip
        tree = export_revision(rev, Path(tmp))
        brokers = {secure: stack.enter_context(_started(cache_dir, secure, silos))
                   for secure in (False, True)}  # fmt: skip
        legs = arm_order(rounds, warmup)
        for i, (arm, is_warmup) in enumerate(legs, 1):
            print(f"--- leg {i}/{len(legs)}: {arm}{' (warm-up)' if is_warmup else ''}", flush=True)
            broker = brokers[arm == "secure"]
            with acting_on(broker) as bootstrap, tempfile.TemporaryDirectory(dir=tmp) as work:
                load0, t0 = os.getloadavg()[0], time.monotonic()
                cpu0 = process_cpu_s(broker.pid) if broker.pid else None
                leg = _run_leg(bootstrap, tree if arm == "reference" else None,
                               {**knobs, "silos": silos}, Path(work))  # fmt: skip
                cpu1 = process_cpu_s(broker.pid) if broker.pid else None
            leg["result"]["load_avg"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
            if cpu0 is not None and cpu1 is not None:
                share = (cpu1 - cpu0) / (time.monotonic() - t0)
                leg["result"]["broker_cpu_share"] = round(share, 3)
            (warm if is_warmup else measured)[arm].append(leg)
            res = leg["result"]
            print(f"    p50 {res['chat_p50_ms']} ms, p99 {res['chat_p99_ms']} ms, "
                  f"{res['chat_replies']}/{res['chat_sent']} replies, load {res['load_avg']}",
                  flush=True)  # fmt: skip
    doc = summarize_arms(measured)
    doc.update(
        {
            "against": rev,
            "rounds": rounds,
            **knobs,
            "order": [a for a, w in legs if not w],
            "warmup_legs": {a: [_figures(leg) for leg in v] for a, v in warm.items()},
        }
    )
    return doc
