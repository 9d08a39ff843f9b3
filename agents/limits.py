"""Provider limits, shared by every agent and task that calls the same model.

A `Limiter` is keyed by (provider, model, base_url): two agents on one gpt-4o account draw from one
budget of requests, tokens and connections. Concurrency is an asyncio semaphore. Requests and
tokens are sliding windows of reservations (`Window`): at most `rpm` requests in any minute and
`rpm / 60` (at least one) in any second, since providers enforce a minute's limit in slices of a
second; at most `tpm` tokens in any minute, reserved from an estimate before the call and corrected
with the provider's usage after it. (LangChain's token bucket cannot say both: a bucket of one
spaces every burst out, a bigger one lets twice the second's share through.)

In one process the limiter holds that budget itself. On a cluster (`cadsynth.cluster`) each limited
endpoint has one `PermitDesk`, kept by one Ray actor, and every worker's limiter asks it for a
permit before each request: the same budget, held in one place for all workers.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from cadsynth.config import Limit

WINDOW = 60.0


class Window:
    """Reservations in the last `span` seconds, of at most `capacity` in all."""

    def __init__(self, capacity: int, span: float = WINDOW):
        self.capacity = capacity
        self.span = span
        self.entries: deque[list[float]] = deque()  # [time, weight]
        self.used = 0.0  # the entries' weights, kept as they come and go

    def wait(self, weight: int, now: float) -> float:
        """0 when `weight` fits now (or the window is empty), else how long until its oldest leaves."""
        while self.entries and self.entries[0][0] <= now - self.span:
            self.used -= self.entries.popleft()[1]
        if self.used + weight <= self.capacity or not self.entries:
            return 0.0
        return self.entries[0][0] + self.span - now

    def take(self, weight: int, now: float) -> list[float]:
        entry = [now, float(weight)]
        self.entries.append(entry)
        self.used += weight
        return entry

    def settle(self, entry: list[float], weight: int) -> None:
        if self.entries and entry[0] >= self.entries[0][0]:  # still counted (entries leave oldest first)
            self.used += weight - entry[1]
        entry[1] = float(weight)


async def reserve(*asks: tuple[Window, int]) -> list[list[float]]:
    """Wait until every window has room for its weight, then take them all at one moment: the
    request leaves right after, so each window counts it when it is sent."""
    while True:
        now = time.monotonic()
        longest = max((window.wait(weight, now) for window, weight in asks), default=0.0)
        # One event loop runs the calls, so nothing can slip in between the check and the take.
        if longest == 0.0:
            return [window.take(weight, now) for window, weight in asks]
        await asyncio.sleep(min(1.0, max(0.005, longest)))


@dataclass
class Ticket:
    """One admitted request; `settle` replaces its token estimate with the real usage."""

    window: Window | None = None
    entry: list[float] | None = None
    on_settle: Callable[[int], None] | None = None  # a permit's desk, on a cluster

    def settle(self, tokens: int) -> None:
        if self.window is not None and self.entry is not None:
            self.window.settle(self.entry, tokens)
        if self.on_settle is not None:
            self.on_settle(tokens)


class Desk(Protocol):
    """Where a cluster's workers get permits for one endpoint (a Ray actor's `PermitDesk`)."""

    def acquire(self, holder: str, tokens: int) -> Awaitable[str | None]: ...

    def settle(self, permit: str, tokens: int) -> None: ...

    def release(self, permit: Any) -> None: ...  # a permit, or the pending answer of an acquire


class Limiter:
    def __init__(self, limit: Limit | None, desk: Desk | None = None, holder: str = ""):
        self.limit = limit
        # On a cluster the desk holds the endpoint's budget; this process only asks it.
        self.desk, self.holder = desk, holder
        self.requests: list[Window] = (
            [Window(limit.rpm), Window(max(1, limit.rpm // 60), span=1.0)] if limit and limit.rpm else []
        )
        self.tokens = Window(limit.tpm) if limit and limit.tpm else None
        # Calls in a row that gave up without one answer from this server (see Caller.call).
        self.unanswered_calls = 0
        # Semaphores belong to an event loop; a process normally has one, tests have several.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> asyncio.Semaphore | None:
        if not (self.limit and self.limit.concurrency):
            return None
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = asyncio.Semaphore(self.limit.concurrency)
        return self._gates[loop]

    @asynccontextmanager
    async def admit(self, estimated_tokens: int, panel_gate: asyncio.Semaphore | None = None) -> AsyncIterator[Ticket]:
        """Hold this model's connection slot and the panel's, then wait for room in the token
        window and for a request token: the request leaves right after, so what is sent is what
        was spaced."""
        if self.desk is not None:
            async with self._permit(estimated_tokens, panel_gate) as ticket:
                yield ticket
            return
        held: list[asyncio.Semaphore] = []
        try:
            for gate in (self._gate(), panel_gate):
                if gate is not None:
                    await gate.acquire()
                    held.append(gate)
            asks = [(window, 1) for window in self.requests]
            if self.tokens is not None:
                asks.append((self.tokens, estimated_tokens))
            taken = await reserve(*asks)
            yield Ticket(self.tokens, taken[-1] if self.tokens is not None else None)
        finally:
            for gate in reversed(held):
                gate.release()


    @asynccontextmanager
    async def _permit(self, estimated_tokens: int, panel_gate: asyncio.Semaphore | None) -> AsyncIterator[Ticket]:
        """The desk's permit for one request (the panel's gate stays this process's own)."""
        desk = self.desk
        assert desk is not None
        async with panel_gate if panel_gate is not None else _no_gate():
            asking = desk.acquire(self.holder, estimated_tokens)
            try:
                permit = await asking
            except asyncio.CancelledError:
                desk.release(asking)  # the permit may still be granted: hand it back when it is
                raise
            if permit is None:
                raise RuntimeError(f"the limits desk of {self.limit} no longer serves {self.holder!r}")
            try:
                yield Ticket(on_settle=lambda tokens: desk.settle(permit, tokens))
            finally:
                desk.release(permit)


@asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield


class PermitDesk:
    """One endpoint's limits, handed out as permits to the requests of many processes.

    A cluster keeps one per limited endpoint in a Ray actor; its `Limiter` does the spacing, so the
    rules are the same as in one process. A permit is held from before a request leaves until it
    ends. Holders are lane attempts (`lane@attempt`): when Ray runs a lane again after its worker
    died, `forget` returns what the dead attempt held and refuses it anything it was still waiting
    for, so a crash never shrinks the budget.
    """

    def __init__(self, limit: Limit):
        self.limiter = Limiter(limit)
        self.permits: dict[str, tuple[str, AsyncExitStack, Ticket]] = {}
        self.attempt: dict[str, str] = {}  # lane -> the attempt running it now
        self.issued = 0

    async def acquire(self, holder: str, tokens: int) -> str | None:
        stack = AsyncExitStack()
        ticket = await stack.enter_async_context(self.limiter.admit(tokens))
        lane = holder.rpartition("@")[0]
        if self.attempt.setdefault(lane, holder) != holder:  # its worker died while it waited
            await stack.aclose()
            return None
        self.issued += 1
        permit = f"{holder}#{self.issued}"
        self.permits[permit] = (holder, stack, ticket)
        return permit

    def settle(self, permit: str, tokens: int) -> None:
        if permit in self.permits:
            self.permits[permit][2].settle(tokens)

    async def release(self, permit: str | None) -> None:
        entry = self.permits.pop(permit, None) if permit is not None else None
        if entry is not None:
            await entry[1].aclose()

    async def forget(self, lane: str, current: str) -> int:
        """Make `current` the attempt running `lane` and return the permits of any other; how many."""
        self.attempt[lane] = current
        stale = [p for p, (holder, _, _) in self.permits.items() if holder.rpartition("@")[0] == lane and holder != current]
        for permit in stale:
            await self.release(permit)
        return len(stale)

    def in_use(self) -> int:
        return len(self.permits)


_registry: dict[tuple[str, str, str | None], Limiter] = {}
# On a cluster worker: the desks of the run's limited endpoints, and who is asking (lane@attempt).
_desks: dict[tuple[str, str, str | None], Desk] = {}
_holder = ""


def share_limits(desks: dict[tuple[str, str, str | None], Desk], holder: str) -> None:
    """Make this process ask `desks` (keyed like the limiters) instead of keeping budgets itself."""
    global _holder
    _desks.clear()
    _desks.update(desks)
    _holder = holder


def limiter_for(provider: str, model: str, base_url: str | None, limit: Limit | None) -> Limiter:
    """The process-wide limiter of one model on one server.

    Every agent of a run sees the same limits; a config that declares other limits for the same
    model (a later run in this process) gets a fresh limiter. On a cluster worker a limited
    endpoint's limiter asks the run's desk for it.
    """
    key = (provider, model, base_url)
    desk = _desks.get(key) if limit is not None else None
    found = _registry.get(key)
    if found is None or found.limit != limit or found.desk is not desk or found.holder != _holder:
        _registry[key] = Limiter(limit, desk, _holder) if desk is not None else Limiter(limit)
    return _registry[key]
