"""``fedstream bench quality``: how good the federated model is, measured without bias.

For each stream (:mod:`bench.quality_streams`) and the same rows:

- **federated** with the run-config defaults (nothing set but the row width), rounds run
  in-process through the deployed round code (:mod:`app.fl.simulate`);
- **centralised** with the same settings: round ``r`` pools every silo's rows of round ``r``;
- **local-only**: every silo trains alone on its own rows of the same rounds;
- **river**: River's online logistic regression with standard scaling, one row at a time
  in event-time order (predict, then learn), the online learner a user would try first.
- **ceiling** (:mod:`bench.quality_ceiling`): batch logistic regression and boosted trees
  retrained at every quarter of the run on all earlier rows, to tell a poor fit from
  features that carry no more (not prequential per row; an upper reference).

Every figure is whole-run and prequential (each row scored before anything trains on it):
ROC AUC and PR AUC (average precision) computed exactly from the scores, and beside them
the published mergeable figure (the merged log-odds histograms ``fl.metrics`` carries).
The last output line is one JSON object with every figure per stream and the targets.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import typer

from app.fl.config import DEFAULTS, FLConfig
from app.model.exact_metrics import exact_average_precision, exact_roc_auc

if TYPE_CHECKING:  # flwr and JAX load when the bench runs, not with `fedstream --help`
    from app.fl.simulate import RunResult
    from bench.quality_streams import Stream

__all__ = ["bench_quality_command", "river_prequential", "run_stream", "segment_aucs"]

logger = logging.getLogger(__name__)

TARGETS = {
    "federated_minus_centralised_roc_auc_min": -0.01,
    "federated_minus_river_roc_auc_min": 0.0,
    "federated_minus_river_roc_auc_min_synthetic": 0.03,
    "federated_minus_local_only_roc_auc_min": 0.0,
    "published_minus_exact_roc_auc_abs_max": 0.002,
}


def _r(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _figures(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    return {
        "roc_auc": _r(exact_roc_auc(scores, labels)),
        "pr_auc": _r(exact_average_precision(scores, labels)),
    }


def summarise(result: RunResult, stream: Stream | None = None) -> dict[str, Any]:
    """Whole-run global and per-silo figures: exact and published (mergeable).

    With ``stream``, also the exact ROC AUC per event-time segment (``segments``).
    """
    s, y = result.all_arrays()
    pub = result.published_global()
    out: dict[str, Any] = {
        **_figures(s, y),
        "published_roc_auc": _r(pub.roc_auc()),
        "published_pr_auc": _r(pub.pr_auc()),
        "rows": int(y.size),
        "positives": int(y.sum()),
        "silos": {},
    }
    for silo in sorted(result.scores):
        ss, sy = result.silo_arrays(silo)
        h = result.published[silo]
        out["silos"][str(silo)] = {
            **_figures(ss, sy),
            "published_roc_auc": _r(h.roc_auc()),
            "rows": int(sy.size),
        }
    if stream is not None:
        out["segments"] = segment_aucs(s, y, _orders(result, stream))
    return out


SEGMENTS = 4
"""The whole run's labelled rows cut into this many equal parts in event-time order."""


def segment_aucs(scores: np.ndarray, labels: np.ndarray, order: np.ndarray) -> list[float | None]:
    """Exact ROC AUC of each event-time segment: where in the run a learner gains or loses."""
    idx = np.argsort(order, kind="stable")
    s, y = scores[idx], labels[idx]
    out: list[float | None] = []
    for part in range(SEGMENTS):
        a, b = part * y.size // SEGMENTS, (part + 1) * y.size // SEGMENTS
        out.append(_r(exact_roc_auc(s[a:b], y[a:b])) if 0 < y[a:b].sum() < b - a else None)
    return out


def _orders(result: RunResult, stream: Stream) -> np.ndarray:
    """Stream positions of a run's labelled rows, in the order of ``all_arrays``.

    Every silo's rounds read its rows in order from the first, so its scored rows are
    the labelled ones among its first ``n`` rows.
    """
    parts = []
    for silo in sorted(result.scores):
        y = stream.silos[silo].y
        n = int(sum(len(p) for p in result.labels[silo]))
        labelled = np.flatnonzero(y >= 0)[:n]
        parts.append(stream.silos[silo].order[labelled])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def river_prequential(stream: Stream) -> dict[str, Any]:
    """River's StandardScaler | LogisticRegression over all silos in event-time order."""
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    X = np.concatenate([s.X for s in stream.silos])
    y = np.concatenate([s.y for s in stream.silos])
    order = np.argsort(np.concatenate([s.order for s in stream.silos]), kind="stable")
    positions = np.concatenate([s.order for s in stream.silos])
    scores, labels, seen = [], [], []
    names = list(range(X.shape[1]))
    for i in order:
        if y[i] < 0:
            continue  # River cannot learn an unlabelled row; it is not scored either
        x = dict(zip(names, X[i].tolist(), strict=True))
        scores.append(model.predict_proba_one(x).get(True, 0.0))
        labels.append(int(y[i]))
        seen.append(positions[i])
        model.learn_one(x, bool(y[i] > 0))
    s, lab = np.asarray(scores), np.asarray(labels)
    return {**_figures(s, lab), "segments": segment_aucs(s, lab, np.asarray(seen))}


def run_stream(
    stream: Stream,
    overrides: dict[str, Any] | None = None,
    river: bool = True,
    ceiling: bool = False,
) -> dict[str, Any]:
    """Federated, centralised, local-only (and River, and the batch ceiling) figures."""
    from app.fl.simulate import plan_rounds, run_centralised, run_federated, run_local

    cfg = FLConfig.from_run_config({**DEFAULTS, **(overrides or {})})
    policy = cfg.policy()
    plan = plan_rounds(stream.silos, policy)
    t0 = time.perf_counter()
    fed = run_federated(stream.silos, plan, cfg, stream.n_features)
    t_fed = time.perf_counter() - t0
    cen = run_centralised(stream.silos, plan, cfg, stream.n_features)
    loc = run_local(stream.silos, plan, cfg, stream.n_features)
    sizes = [len(r) for r in plan]
    out: dict[str, Any] = {
        "stream": stream.name,
        "note": stream.note,
        "labelled_rows": stream.labelled,
        "positive_rate": round(stream.positives / max(stream.labelled, 1), 5),
        "rounds": len(plan),
        "silos_per_round_mean": round(float(np.mean(sizes)), 2) if sizes else 0,
        "single_silo_rounds": int(sum(1 for n in sizes if n == 1)),
        "federated": summarise(fed, stream),
        "centralised": summarise(cen, stream),
        "local_only": summarise(loc, stream),
        "federated_seconds": round(t_fed, 1),
    }
    if river:
        out["river"] = river_prequential(stream)
    if ceiling:
        from bench.quality_ceiling import batch_ceiling

        out["ceiling"] = batch_ceiling(stream)
    return out


def _print_table(result: dict[str, Any]) -> None:
    typer.echo(
        f"\n== {result['stream']}: {result['note']}; {result['labelled_rows']} labelled rows, "
        f"{result['positive_rate']:.2%} positive; {result['rounds']} rounds, "
        f"{result['silos_per_round_mean']} silos/round, {result['single_silo_rounds']} single-silo"
    )
    typer.echo(f"{'':>12} {'ROC AUC':>8} {'(pub.)':>8} {'PR AUC':>8} {'(pub.)':>8}")
    for name in ("federated", "centralised", "local_only", "river"):
        f = result.get(name)
        if f is None:
            continue
        cells = [
            f.get("roc_auc"),
            f.get("published_roc_auc"),
            f.get("pr_auc"),
            f.get("published_pr_auc"),
        ]
        typer.echo(f"{name:>12} " + " ".join(f"{'-' if c is None else c:>8}" for c in cells))
    typer.echo(f"{'':>12} ROC AUC per quarter of the run (event time)")
    for name in ("federated", "centralised", "local_only", "river"):
        f = result.get(name)
        if f is not None and "segments" in f:
            typer.echo(
                f"{name:>12} " + " ".join(f"{'-' if c is None else c:>8}" for c in f["segments"])
            )
    ceiling = result.get("ceiling")
    if ceiling:
        typer.echo(f"{'':>12} batch learners retrained each quarter on all earlier rows")
        for name, label in (("logistic", "batch LR"), ("gbm", "batch GBM"),
                            ("gbm_one_silo", "GBM silo 0")):  # fmt: skip
            typer.echo(
                f"{label:>12} " + " ".join(f"{'-' if c is None else c:>8}" for c in ceiling[name])
            )
    for name in ("federated", "centralised", "local_only"):
        silos = result[name]["silos"]
        typer.echo(
            f"{name:>12} per silo ROC AUC: "
            + ", ".join(f"{s}: {v['roc_auc']}" for s, v in silos.items())
        )


def _checks(result: dict[str, Any]) -> dict[str, bool]:
    fed, cen, loc = result["federated"], result["centralised"], result["local_only"]
    delta_pub = abs((fed["published_roc_auc"] or 0) - (fed["roc_auc"] or 0))
    river_min = 0.03 if result["stream"] == "synthetic" else 0.0
    checks = {
        "federated_within_0.01_of_centralised": fed["roc_auc"] >= cen["roc_auc"] - 0.01,
        "federated_above_local_only": fed["roc_auc"] > loc["roc_auc"],
        "published_within_0.002_of_exact": delta_pub <= 0.002,
    }
    if "river" in result:
        checks[f"federated_at_least_{river_min}_above_river"] = (
            fed["roc_auc"] >= result["river"]["roc_auc"] + river_min
        )
    return checks


def bench_quality_command(
    streams: str = typer.Option("synthetic,uci,shuttle", help="Comma-separated streams."),
    silos: int = typer.Option(3, help="Silos per stream."),
    customers: int = typer.Option(2000, help="Customers of the synthetic bank."),
    days: float = typer.Option(28.0, help="Days of the synthetic bank."),
    preset: str = typer.Option("realistic", help="Preset of the synthetic bank."),
    run_config: list[str] | None = typer.Option(  # noqa: B008
        None, "--run-config", "-c", help="Run-config override KEY=VALUE (default: none)."
    ),
    river: bool = typer.Option(True, help="Also run River's online logistic regression."),
    ceiling: bool = typer.Option(
        True, help="Also retrain batch logistic regression and boosted trees each quarter."
    ),
) -> None:
    """Whole-run prequential ROC/PR AUC: federated vs centralised, local-only and River."""
    from app.fl.cli import _overrides
    from bench.quality_streams import load_stream

    overrides = _overrides(run_config)
    logging.getLogger("flwr").setLevel(logging.ERROR)  # one line per aggregation otherwise
    results: dict[str, Any] = {}
    for name in [s.strip() for s in streams.split(",") if s.strip()]:
        t0 = time.perf_counter()
        stream = load_stream(name, silos, customers=customers, days=days, preset=preset)
        logger.info(
            "%s: %d labelled rows loaded in %.1f s", name, stream.labelled, time.perf_counter() - t0
        )
        result = run_stream(
            stream, {"n-features": stream.n_features, **overrides}, river=river, ceiling=ceiling
        )
        result["checks"] = _checks(result)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        _print_table(result)
        results[name] = result
    all_ok = all(all(r["checks"].values()) for r in results.values())
    typer.echo(
        orjson.dumps(
            {"bench": "quality", "streams": results, "targets": TARGETS, "all_targets_met": all_ok}
        ).decode()
    )
