"""Round plans of the round policy and in-process federated rounds (bench quality)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from app.fl.config import FLConfig
from app.fl.rounds import RoundPolicy
from app.fl.simulate import SiloStream, plan_rounds, run_centralised, run_federated, run_local
from app.model.exact_metrics import exact_roc_auc


def _streams(rates: list[float], n: int, seed: int = 0) -> list[SiloStream]:
    """Silos whose rows arrive interleaved with the given relative rates."""
    rng = np.random.default_rng(seed)
    silo = rng.choice(len(rates), size=n, p=np.asarray(rates) / sum(rates))
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 1.5).astype(np.float32)
    order = np.arange(n)
    return [SiloStream(X[silo == s], y[silo == s], order[silo == s]) for s in range(len(rates))]


def test_wait_policy_keeps_every_silo_and_every_row() -> None:
    # Prepare: one silo gets four times the rows of the others
    streams = _streams([4.0, 1.0, 1.0], 30_000)

    # Execute
    wait = plan_rounds(streams, RoundPolicy(round_rows=1000, first_round_rows=100))
    first = plan_rounds(streams, RoundPolicy(round_rows=1000, first_ready=True))

    # Assert: the wait policy trains all three silos together; first-ready mostly one
    assert np.mean([len(r) for r in wait]) > 2.5
    assert sum(1 for r in first if len(r) == 1) > len(first) / 2
    for plan in (wait, first):
        for s, stream in enumerate(streams):
            ranges = [r[s] for r in plan if s in r]
            assert sum(e - b for b, e in ranges) == stream.rows  # every row exactly once
            assert all(a[1] == b[0] for a, b in pairwise(ranges))
    assert [sum(e - b for b, e in r.values()) for r in wait[:3]] == sorted(
        sum(e - b for b, e in r.values()) for r in wait[:3]
    )  # small early rounds grow


def test_in_process_rounds_score_the_same_rows() -> None:
    # Prepare
    streams = _streams([1.0, 1.0], 6_000, seed=1)
    cfg = FLConfig(n_features=4, lr=0.01, init_prior=0.05)
    plan = plan_rounds(streams, RoundPolicy(round_rows=500, first_round_rows=200))

    # Execute
    runs = [f(streams, plan, cfg, 4) for f in (run_federated, run_centralised, run_local)]

    # Assert: same labelled rows everywhere; published (merged histograms) == exact
    for run in runs:
        scores, labels = run.all_arrays()
        assert labels.size == sum(int((s.y >= 0).sum()) for s in streams)
        exact = exact_roc_auc(scores, labels)
        assert abs(run.published_global().roc_auc() - exact) < 0.002
        assert exact > 0.8  # the signal is learnt
    assert runs[0].rounds[0]["silos"] == [0, 1]


def test_bench_segments_follow_event_time() -> None:
    # Prepare: two silos interleaved unevenly, some labels unknown
    from bench.quality import _orders, segment_aucs, summarise
    from bench.quality_streams import Stream

    streams = _streams([1.0, 3.0], 4_000, seed=2)
    streams[1].y[::7] = -1.0
    stream = Stream("t", streams, 4, "test")
    cfg = FLConfig(n_features=4, lr=0.01)
    run = run_centralised(streams, plan_rounds(streams, RoundPolicy(round_rows=400)), cfg, 4)

    # Execute
    scores, labels = run.all_arrays()
    order = _orders(run, stream)
    summary = summarise(run, stream)

    # Assert: each scored label sits at its row's place in the stream
    y_all = np.concatenate([s.y for s in streams])[
        np.argsort(np.concatenate([s.order for s in streams]))
    ]
    assert np.array_equal(labels[np.argsort(order, kind="stable")], y_all[y_all >= 0])
    assert summary["segments"] == segment_aucs(scores, labels, order)
    assert len(summary["segments"]) == 4 and all(v is not None for v in summary["segments"])
