"""The join gate's release rules, with an injected clock and fetch positions."""

from __future__ import annotations

import asyncio

import pytest

from app.stream.join_gate import JoinGate


class Positions:
    """Fetch positions the gate reads (what the Faust consumer would report)."""

    def __init__(self) -> None:
        self.customers_end: dict[int, int | None] = {0: 0}
        self.committed: dict[int, int | None] = {}
        self.transactions_end: dict[int, int | None] = {0: 10}
        self.now = 100.0

    def gate(self, hold_s: float = 0.5, max_wait_s: float = 2.0) -> JoinGate:
        return JoinGate(
            lambda p: self.customers_end.get(p),
            lambda p: self.committed.get(p),
            lambda p: self.transactions_end.get(p),
            hold_s,
            max_wait_s,
            clock=lambda: self.now,
        )


def test_a_profile_past_the_transaction_time_releases_it_at_once() -> None:
    # Prepare
    pos = Positions()
    pos.customers_end[0] = 5  # customers not read to the end
    gate = pos.gate()

    # Execute / Assert
    assert not gate.ready(0, 3, 1000.0)
    gate.customer_read(0, 0, 999.0)
    assert not gate.ready(0, 3, 1000.0)
    gate.customer_read(0, 1, 1000.0)
    assert gate.ready(0, 3, 1000.0)
    assert not gate.ready(1, 3, 1000.0), "partitions are independent"


def test_caught_up_customers_release_after_the_hold_since_arrival() -> None:
    # Prepare
    pos = Positions()
    gate = pos.gate(hold_s=0.5)

    # Execute / Assert: seen at 100.0; customers read to their end (empty partition)
    assert not gate.ready(0, 3, 50.0)
    pos.now = 100.4
    assert not gate.ready(0, 3, 50.0)
    pos.now = 100.5
    assert gate.ready(0, 3, 50.0)
    pos.transactions_end[0] = 20  # offsets 10..19 arrive now
    assert gate.ready(0, 9, 50.0), "arrived with the first highwater"
    assert not gate.ready(0, 15, 50.0), "arrived only now"


def test_a_profile_appended_during_the_hold_is_waited_for() -> None:
    # Prepare
    pos = Positions()
    gate = pos.gate(hold_s=0.5)
    assert not gate.ready(0, 3, 50.0)

    # Execute: a profile lands on the broker during the hold, not read yet
    pos.now = 100.3
    pos.customers_end[0] = 1
    pos.now = 101.0

    # Assert
    assert not gate.ready(0, 3, 50.0)
    gate.customer_read(0, 0, 10.0)  # older than the transaction: read, then released
    assert gate.ready(0, 3, 50.0)


def test_reading_starts_at_the_committed_offset_and_unknown_ends_hold() -> None:
    # Prepare
    pos = Positions()
    pos.customers_end[0] = 7
    pos.committed[0] = 7
    pos.customers_end[1] = None
    pos.transactions_end[1] = 10
    gate = pos.gate(hold_s=0.0)

    # Execute / Assert
    assert gate.caught_up(0)
    assert gate.ready(0, 1, 50.0)
    assert not gate.caught_up(1), "no fetch yet: unknown end"
    gate.forget([0])
    assert gate.caught_up(0)


def test_wait_gives_up_after_max_wait_and_counts_it() -> None:
    # Prepare
    pos = Positions()
    pos.customers_end[0] = 3  # never read
    real = {"t": 0.0}
    gate = JoinGate(lambda p: pos.customers_end.get(p), lambda p: None,
                    lambda p: pos.transactions_end.get(p), 0.0, 0.05,
                    clock=lambda: real["t"])  # fmt: skip

    async def run() -> None:
        async def tick() -> None:
            while True:
                await asyncio.sleep(0.001)
                real["t"] += 0.002

        ticker = asyncio.ensure_future(tick())
        await asyncio.wait_for(gate.wait(0, 1, 50.0), 5.0)
        ticker.cancel()

    # Execute
    asyncio.run(run())

    # Assert
    assert gate.counters.held == 1
    assert gate.counters.timeouts == 1


def test_gate_rejects_a_hold_longer_than_the_wait() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        JoinGate(lambda p: 0, lambda p: 0, lambda p: 0, hold_s=2.0, max_wait_s=1.0)


def test_wait_returns_at_once_when_delivery_stops() -> None:
    # Prepare: customers never read, so only rule 4 can release it
    pos = Positions()
    pos.customers_end[0] = 3
    stopped = {"now": False}
    gate = JoinGate(lambda p: pos.customers_end.get(p), lambda p: None,
                    lambda p: pos.transactions_end.get(p), 0.0, 60.0,
                    interrupted=lambda: stopped["now"])  # fmt: skip

    async def run() -> float:
        async def stop_soon() -> None:
            await asyncio.sleep(0.05)
            stopped["now"] = True

        stopper = asyncio.ensure_future(stop_soon())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(gate.wait(0, 1, 50.0), 5.0)
        await stopper
        return loop.time() - t0

    # Execute
    waited = asyncio.run(run())

    # Assert
    assert waited < 2.0
    assert (gate.counters.held, gate.counters.interrupted, gate.counters.timeouts) == (1, 1, 0)
