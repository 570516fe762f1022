"""CommitWatch: what was processed two commits ago must be committed now."""

from __future__ import annotations

from app.stream.commit_watch import CommitWatch


def test_commits_that_keep_up_never_trail() -> None:
    watch = CommitWatch()
    trails = []
    for tick in range(10):  # processed 100 per tick, committed one tick behind
        trails += watch.observe({"p0": (tick + 1) * 100}, {"p0": tick * 100 or None})
    assert trails == []
    assert watch.checks == 8


def test_a_crawling_partition_trails_every_commit() -> None:
    watch = CommitWatch()
    trails = []
    for tick in range(6):  # processing moves on, the commit gains one record per tick
        trails += watch.observe({"p0": 1000 + tick * 200, "p1": 50}, {"p0": 1000 + tick, "p1": 50})
    assert [t.partition for t in trails] == ["p0"] * 3  # ticks 3, 4, 5
    assert trails[0].committed == 1003 and trails[0].processed_before == 1200
    assert str(trails[0]) == "p0: committed 1003, but 1200 was processed 2 commits ago"


def test_reset_waits_for_new_progress() -> None:
    watch = CommitWatch()
    for tick in range(3):
        watch.observe({"p0": 100 + tick}, {"p0": 100 + tick})
    watch.reset({"p0": 102})
    # after the rebalance nothing was committed yet, and p0 has not processed anything new
    assert watch.observe({"p0": 102}, {}) == []
    assert watch.observe({"p0": 102}, {}) == []
    assert watch.observe({"p0": 102}, {}) == []
    # it processes again: two commits later its commit must have caught up
    assert watch.observe({"p0": 110}, {"p0": 100}) == []
    assert watch.observe({"p0": 120}, {"p0": 110}) == []
    assert [t.processed_before for t in watch.observe({"p0": 130}, {"p0": 105})] == [110]
    assert watch.take_summary() == "commit checks 2, trailing 1"  # one before the reset
