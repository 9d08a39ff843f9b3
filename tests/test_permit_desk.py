"""The desk that holds one endpoint's limits for a cluster: permits within the limit, and a lane
started again after its worker died gets back what the dead attempt held (no Ray needed here)."""

from __future__ import annotations

import asyncio

from cadsynth.agents.limits import PermitDesk
from cadsynth.config import Limit


def test_permits_stay_within_concurrency_and_a_dead_attempts_come_back():
    async def go() -> None:
        desk = PermitDesk(Limit(provider="openai", model="gpt-4o", concurrency=2))
        first = await desk.acquire("run.lane0@a", 10)
        second = await desk.acquire("run.lane0@a", 10)
        waiting = asyncio.ensure_future(desk.acquire("run.lane1@b", 10))
        await asyncio.sleep(0.05)
        assert not waiting.done() and desk.in_use() == 2  # the limit holds
        # lane0's worker died holding both permits; Ray starts the lane again as attempt c.
        assert await desk.forget("run.lane0", "run.lane0@c") == 2
        third = await asyncio.wait_for(waiting, 1)
        assert third is not None and desk.in_use() == 1
        # A request of the dead attempt that was still waiting is refused, not granted.
        stale = asyncio.ensure_future(desk.acquire("run.lane0@a", 10))
        assert await asyncio.wait_for(stale, 1) is None and desk.in_use() == 1
        await desk.release(third)
        await desk.release(first)  # already returned: nothing happens
        assert desk.in_use() == 0 and first and second

    asyncio.run(go())
