"""`fedstream worker` runs on uvloop (app/stream/cli.py): installed, and it takes effect."""

from __future__ import annotations

import asyncio

from app.stream.cli import _use_uvloop


def test_the_worker_selects_uvloop_for_the_loops_it_creates() -> None:
    before = asyncio.get_event_loop_policy()
    try:
        _use_uvloop()
        loop = asyncio.new_event_loop()
        try:
            assert type(loop).__module__.startswith("uvloop"), type(loop)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(before)
