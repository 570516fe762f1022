"""``fedstream bench fl``: federated round wall time, Flower overhead, training and decode speed.

Measures, on the configured broker and real Flower processes:

- round wall time with 2 and 4 silos at ``rows`` rows per silo per round (steady state =
  median of rounds 2..R: round 1 also pays XLA compilation);
- Flower's own overhead: the same 4-silo rounds with ``local-epochs = 0`` (no training),
  with the warm ClientApp runtime (default) and, as the in-run baseline, with Flower's
  stock process per message;
- per-silo training samples/s of :func:`app.model.training.train` versus a plain JAX loop
  on the same arrays (ratio), and the samples/s clients reached inside the rounds;
- batch-frame decode rows/s (zero-copy decode, and decode + copy into one array).

The last output line is one JSON object with all figures. Bench topics (silo ids 900+)
are deleted afterwards; Flower runs in a temporary data dir on free ports.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import typer

import topics
from app.features.frames import decode_batch
from app.features.spec import FeatureSpec
from app.fl import processes
from app.fl.kafka_io import ensure_topics, produce_frames, read_metrics
from app.fl.synthetic import synthetic_frames
from app.kafka.admin import delete_topics, make_admin
from app.model.bench_reference import compare_throughput
from app.ports import free_port
from app.settings import Settings

__all__ = ["bench_decode", "bench_fl_command", "bench_rounds", "run_bench"]

logger = logging.getLogger(__name__)

TARGETS = {"round_overhead_s_4_silos": 5.0, "train_ratio": 0.8, "decode_rows_per_s": 1e6}


def bench_decode(n_features: int, rows: int = 10_000, repeats: int = 200) -> dict[str, float]:
    """Rows/s of :func:`decode_batch` (zero copy) and of decode + copy of 1,000-row frames."""
    frames = synthetic_frames(0, "bench", rows, n_features=n_features, frame_rows=1000)
    big = synthetic_frames(0, "bench", rows, n_features=n_features, frame_rows=rows)[0]
    t0 = time.perf_counter()
    for _ in range(repeats):
        decode_batch(big)
    zero_copy = rows * repeats / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(repeats // 10):
        decoded = [decode_batch(f) for f in frames]
        np.concatenate([d.X for d in decoded])
        np.concatenate([d.y for d in decoded])
    copied = rows * (repeats // 10) / (time.perf_counter() - t0)
    return {"decode_rows_per_s": zero_copy, "decode_copy_rows_per_s": copied}


def bench_rounds(
    bootstrap: str,
    n_silos: int,
    rounds: int,
    rows: int,
    n_features: int,
    epochs: int,
    warm_clients: bool = True,
    insecure: bool = False,
) -> dict[str, Any]:
    """Run ``rounds`` federated rounds on ``n_silos`` fresh bench silos; figures from fl.metrics."""
    tag = uuid.uuid4().hex[:8]
    silos = [900 + (int(tag[:4], 16) % 50) * 8 + i for i in range(n_silos)]
    spec, model = f"bench-{tag}", f"bench-{tag}-{n_silos}-e{epochs}"
    ensure_topics(bootstrap, silos)
    for silo in silos:
        frames = synthetic_frames(silo, spec, rounds * rows, n_features=n_features, frame_rows=1000)
        produce_frames(bootstrap, topics.silo_batches(silo), str(silo), frames)
    run_config = {
        "num-rounds": rounds,
        "min-nodes": n_silos,
        "max-rows-per-round": rows,
        "min-rows": 1,
        "local-epochs": epochs,
        "spec-version": spec,
        "n-features": n_features,
        "model-name": model,
        "round-timeout": 300.0,
        "resume": False,
    }
    with tempfile.TemporaryDirectory(prefix="fedstream-bench-") as tmp:
        t0 = time.perf_counter()
        try:
            processes.up(
                data_dir=Path(tmp),
                bootstrap=bootstrap,
                silo_ids=silos,
                superlink_port=free_port(),
                supernode_base_port=free_port(n_silos),
                run_config=run_config,
                warm_clients=warm_clients,
                insecure=insecure,
            )
            docs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 90 + 90 * rounds
            while len(docs) < rounds and time.monotonic() < deadline:
                time.sleep(1.0)
                docs = read_metrics(bootstrap, model)
        finally:
            processes.down(Path(tmp))
            delete_topics(make_admin(bootstrap), [topics.silo_batches(s) for s in silos])
    if len(docs) < rounds:
        raise RuntimeError(f"only {len(docs)} of {rounds} rounds finished ({n_silos} silos)")
    seconds = [float(d["round_seconds"]) for d in docs]
    train_rates = [
        e["rows"] * max(epochs, 1) / e["train_seconds"]
        for d in docs[1:]
        for e in d["silos"].values()
        if e.get("train_seconds")
    ]
    return {
        "silos": n_silos,
        "epochs": epochs,
        "round_seconds": seconds,
        "steady_round_s": statistics.median(seconds[1:] or seconds),
        "first_round_s": seconds[0],
        "total_s": time.perf_counter() - t0,
        "client_train_samples_per_s": statistics.median(train_rates) if train_rates else None,
        "final_roc_auc": docs[-1]["global"]["roc_auc"],
    }


def run_bench(bootstrap: str, rounds: int = 4, rows: int = 10_000) -> dict[str, Any]:
    """All figures of the benchmark (see the module docstring)."""
    n_features = FeatureSpec().n_features
    out: dict[str, Any] = {"rows_per_silo_per_round": rows, "n_features": n_features}
    out.update(bench_decode(n_features, rows))
    typer.echo(
        f"decode: {out['decode_rows_per_s']:,.0f} rows/s zero-copy, "
        f"{out['decode_copy_rows_per_s']:,.0f} rows/s with copy"
    )
    ratio = compare_throughput(n_rows=rows, n_features=n_features, batch_size=256, epochs=1)
    out["train_samples_per_s"] = ratio["train_samples_per_s"]
    out["plain_jax_samples_per_s"] = ratio["plain_samples_per_s"]
    out["train_ratio"] = ratio["ratio"]
    typer.echo(
        f"training: {ratio['train_samples_per_s']:,.0f} samples/s vs plain JAX "
        f"{ratio['plain_samples_per_s']:,.0f} (ratio {ratio['ratio']:.2f})"
    )
    for n_silos, epochs, warm in ((2, 1, True), (4, 1, True), (4, 0, True), (4, 0, False)):
        res = bench_rounds(bootstrap, n_silos, rounds, rows, n_features, epochs, warm)
        key = f"silos_{n_silos}" + ("_no_training" if epochs == 0 else "")
        key += "" if warm else "_process_per_message"
        out[key] = res
        typer.echo(
            f"{n_silos} silos, {epochs} epoch(s), "
            f"{'warm runtime' if warm else 'process per message'}: steady round "
            f"{res['steady_round_s']:.2f} s (first {res['first_round_s']:.2f} s), "
            f"rounds {res['round_seconds']}"
        )
    out["round_overhead_s_4_silos"] = out["silos_4_no_training"]["steady_round_s"]
    # Flower's stock ClientApp execution, same rounds in the same run: what warm saves
    stock = out["silos_4_no_training_process_per_message"]["steady_round_s"]
    out["round_overhead_s_4_silos_process_per_message"] = stock
    out["round_overhead_ratio_warm_vs_stock"] = out["round_overhead_s_4_silos"] / stock
    out["targets_met"] = {
        "round_overhead_s_4_silos": out["round_overhead_s_4_silos"]
        <= TARGETS["round_overhead_s_4_silos"],
        "train_ratio": out["train_ratio"] >= TARGETS["train_ratio"],
        "decode_rows_per_s": out["decode_rows_per_s"] >= TARGETS["decode_rows_per_s"],
    }
    return out


def bench_fl_command(
    ctx: typer.Context | None = None,
    rounds: int = 4,
    rows: int = 10_000,
    security: str = "current",
    repeats: int = 2,
    warmup: bool = False,
) -> None:
    """CLI body of ``fedstream bench fl``; the last line printed is one JSON object.

    ``security="both"``: only the 2-silo rounds, on an insecure and a secure temporary
    deployment, compared (bench.security)."""
    base: dict[str, Any] = dict(ctx.obj or {}) if ctx is not None else {}
    settings = Settings(**base)
    from app.cli_support import require_broker

    if security == "both" and not settings.bootstrap_servers:  # --bootstrap: that cluster
        from bench.security import compare_security

        def measure(bootstrap: str, secure: bool) -> dict[str, Any]:
            # the same rounds; off = Kafka PLAINTEXT and Flower --insecure
            n_features = FeatureSpec().n_features
            res = bench_rounds(bootstrap, 2, rounds, rows, n_features, 1, True, not secure)
            typer.echo(f"security {'on' if secure else 'off'}: steady round "
                       f"{res['steady_round_s']:.2f} s, rounds {res['round_seconds']}")  # fmt: skip
            return res

        figures = {"steady_round_s": False, "client_train_samples_per_s": True}
        doc = compare_security(measure, settings.cache_dir, figures, 3, repeats, warmup)
        typer.echo(f"security cost (medians of {repeats} legs per mode): {doc['security_cost']}; "
                   f"paired: {doc['paired_cost']}; target <= {doc['security_target']}: "
                   f"{'met' if doc['security_target_met'] else 'NOT met'}")  # fmt: skip
        typer.echo(orjson.dumps(doc).decode())
        return
    require_broker(settings)
    try:
        result = run_bench(settings.bootstrap, rounds=rounds, rows=rows)
    except processes.FLError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(orjson.dumps(result).decode())
