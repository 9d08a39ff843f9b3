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
import statistics
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from cadsynth.agents.faults import classify
from cadsynth.config import AutoConcurrency, Limit

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


# What says an endpoint is overloaded, besides its latency: it refused (429), failed under load
# (5xx) or did not answer in time.
OVERLOAD = ("rate_limited", "server_error", "timeout")


class Concurrency:
    """How many requests one endpoint is sent at once, found while running (`concurrency: auto`).

    It rises while the endpoint keeps up and falls on each sign that it does not, at most once a
    round trip:
      * a 5xx or a timeout (a server failing under load): x0.75;
      * a 429 (what a paid API says at its rate limit): down to what the rate it let through
        supports (answers a second over the last two seconds, times their median latency: Little's
        law), at most x0.9, and that is where it climbs back to; its Retry-After holds every new
        request to the endpoint that long, and after it requests leave spaced at that rate (a rate
        limit is a bucket: what the room allows at once would empty it), the spacing loosening by
        5% each round trip without a 429;
      * latency inflation (what a self-hosted server does instead: it queues): the median, over a
        round trip, of each answer's latency against the lowest its kind of request has taken,
        above TOLERANCE: x0.9.
    It starts by doubling each round trip until the first such sign. After one, it climbs back
    quickly to where the sign came, then probes past it by one every PROBE round trips, so it
    spends its time just under the endpoint's limit and seldom past it. It rises only when the
    requests used the room it gave. A round trip here is as many answers as requests may be in
    flight (at least four).
    """

    TOLERANCE = 1.3
    PROBE = 3
    RATE_SPAN = 2.0  # seconds of answers a 429 measures the rate let through over

    def __init__(self, auto: AutoConcurrency, now: float | None = None):
        self.low, self.high = auto.min, auto.max
        self.value = float(min(self.high, max(self.low, 4)))
        self.slow_start = True
        self.ceiling: float | None = None  # where the last sign of overload came
        self.held_until = 0.0  # no new request before this (a Retry-After)
        # The latest changes (time, value), for a bench to show; the ledger keeps a run's (cads_concurrency).
        self.changes: deque[tuple[float, int]] = deque([(time.monotonic() if now is None else now, self.limit)], maxlen=1000)
        self._lowest: dict[str, float] = {}  # per kind of request: the lowest typical latency seen
        self._recent: dict[str, deque[float]] = {}
        self._ratios: list[float] = []
        self._answers = 0
        self._busiest = 0  # most requests in flight this round trip
        self._cut = False  # already fell this round trip
        self._probing = 0  # round trips at the last overload's level since the last probe past it
        self._answered: deque[tuple[float, float]] = deque()  # (when, latency) of the last seconds' answers
        self.spacing = 0.0  # seconds between requests since a 429 (0: none)

    @property
    def limit(self) -> int:
        return int(self.value)

    def sent(self, in_flight: int) -> None:
        self._busiest = max(self._busiest, in_flight)

    def answered(self, kind: str, latency: float, now: float) -> None:
        recent = self._recent.setdefault(kind, deque(maxlen=9))
        recent.append(latency)
        if len(recent) >= 3:  # a median, so one lucky answer does not set the bar
            self._lowest[kind] = min(self._lowest.get(kind, float("inf")), statistics.median(recent))
        if kind in self._lowest:
            self._ratios.append(latency / max(self._lowest[kind], 1e-6))
        self._answered.append((now, latency))
        while self._answered and self._answered[0][0] < now - self.RATE_SPAN:
            self._answered.popleft()
        self._answers += 1
        if self._answers >= max(4, self.limit):
            self._round_trip(now)

    def overloaded(self, retry_after: float | None, now: float, *, rate_limited: bool = False) -> None:
        if retry_after:
            self.held_until = max(self.held_until, now + retry_after)
        if self._cut:
            return
        if not rate_limited:
            self._fall(0.75, now)
            return
        recent = [latency for at, latency in self._answered if at >= now - self.RATE_SPAN]
        if len(recent) < 4:  # too few answers to measure a rate by
            self._fall(0.9, now)
            return
        rate = len(recent) / self.RATE_SPAN
        self.spacing = 1 / rate
        supported = rate * statistics.median(recent)
        self._fall(min(0.9, supported / self.value), now, ceiling=max(supported, self.low))

    def _round_trip(self, now: float) -> None:
        inflated = len(self._ratios) >= 3 and statistics.median(self._ratios) > self.TOLERANCE
        if not self._cut:
            self.spacing = self.spacing * 0.95 if self.spacing > 1e-3 else 0.0
            if inflated:
                self._fall(0.9, now)
            elif self._busiest >= self.limit:
                self._rise(now)
        self._ratios, self._answers, self._busiest, self._cut = [], 0, 0, False

    def _fall(self, factor: float, now: float, ceiling: float | None = None) -> None:
        self.ceiling = self.value if ceiling is None else ceiling
        self.slow_start = False
        self._set(max(self.low, self.value * factor), now)
        self._cut = True

    def _rise(self, now: float) -> None:
        if self.slow_start:
            value = self.value * 2
        elif self.ceiling is not None and self.value < self.ceiling - 1:
            value = self.value + (self.ceiling - self.value) / 2
        else:
            self._probing += 1
            if self._probing < self.PROBE:
                return
            value = self.value + 1
        self._probing = 0
        self._set(min(self.high, value), now)

    def _set(self, value: float, now: float) -> None:
        before = self.limit
        self.value = value
        if self.limit != before:
            self.changes.append((now, self.limit))


class AdaptiveGate:
    """Requests in flight to one endpoint, up to what its `Concurrency` says now; the rest wait
    in order. A freed slot goes straight to the next waiter, so thousands of waiting calls cost
    nothing until their turn."""

    def __init__(self, control: Concurrency):
        self.control = control
        self.in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0  # no request before this (the spacing after a 429)

    async def acquire(self) -> None:
        if not self._waiting and self._room():
            self._take()
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._admit()  # a hold (Retry-After) needs its timer from the first waiter on
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.in_flight -= 1  # granted as it was cancelled: hand the slot on
                self._admit()
            raise

    def release(self, kind: str, latency: float, fault: str | None, retry_after: float | None) -> None:
        self.in_flight -= 1
        now = time.monotonic()
        if fault in OVERLOAD:
            self.control.overloaded(retry_after, now, rate_limited=fault == "rate_limited")
        elif fault in (None, "malformed"):  # answered (if not well): its latency counts
            self.control.answered(kind, latency, now)
        self._admit()

    def _room(self) -> bool:
        return self.in_flight < self.control.limit and time.monotonic() >= max(self.control.held_until, self._next)

    def _take(self) -> None:
        self.in_flight += 1
        self._next = time.monotonic() + self.control.spacing
        self.control.sent(self.in_flight)

    def _admit(self) -> None:
        while self._waiting and self._room():
            turn = self._waiting.popleft()
            if not turn.done():
                self._take()
                turn.set_result(None)
        held = max(self.control.held_until, self._next) - time.monotonic()
        if self._waiting and held > 0 and self._timer is None:
            def wake() -> None:
                self._timer = None
                self._admit()

            self._timer = asyncio.get_running_loop().call_later(held, wake)


@dataclass
class Ticket:
    """One admitted request; `settle` replaces its token estimate with the real usage. What came
    of it (`fault`, `retry_after`) is what an adaptive concurrency learns from."""

    window: Window | None = None
    entry: list[float] | None = None
    on_settle: Callable[[int], None] | None = None  # a permit's desk, on a cluster
    fault: str | None = None
    retry_after: float | None = None
    sent: float = field(default_factory=time.monotonic)

    def settle(self, tokens: int) -> None:
        if self.window is not None and self.entry is not None:
            self.window.settle(self.entry, tokens)
        if self.on_settle is not None:
            self.on_settle(tokens)

    def failed(self, exc: BaseException) -> None:
        fault = classify(exc)
        self.fault = fault.kind if fault is not None else "fatal"
        self.retry_after = fault.retry_after if fault is not None else None


class Desk(Protocol):
    """Where a cluster's workers get permits for one endpoint (a Ray actor's `PermitDesk`)."""

    def acquire(self, holder: str, tokens: int, kind: str) -> Awaitable[str | None]: ...

    def settle(self, permit: str, tokens: int) -> None: ...

    # A permit (with what came of its request), or the pending answer of an acquire.
    def release(self, permit: Any, fault: str | None = None, retry_after: float | None = None) -> None: ...


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
        auto = limit.concurrency if limit and isinstance(limit.concurrency, AutoConcurrency) else None
        self.concurrency = Concurrency(auto) if auto is not None and desk is None else None
        # Gates belong to an event loop; a process normally has one, tests have several.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore | AdaptiveGate] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> asyncio.Semaphore | AdaptiveGate | None:
        if not (self.limit and self.limit.concurrency):
            return None
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = (
                AdaptiveGate(self.concurrency) if self.concurrency is not None
                else asyncio.Semaphore(self.limit.concurrency)  # type: ignore[arg-type]
            )
        return self._gates[loop]

    def in_flight(self) -> int:
        return sum(g.in_flight for g in self._gates.values() if isinstance(g, AdaptiveGate))

    @asynccontextmanager
    async def admit(
        self, estimated_tokens: int, panel_gate: asyncio.Semaphore | None = None, kind: str = "request"
    ) -> AsyncIterator[Ticket]:
        """Hold this model's connection slot and the panel's, then wait for room in the token
        window and for a request token: the request leaves right after, so what is sent is what
        was spaced. `kind` (the role asking) sorts latencies for an adaptive concurrency: a
        proposal takes longer than a verdict on any server."""
        if self.desk is not None:
            async with self._permit(estimated_tokens, panel_gate, kind) as permitted:
                yield permitted
            return
        held: list[asyncio.Semaphore | AdaptiveGate] = []
        ticket: Ticket | None = None
        try:
            for gate in (self._gate(), panel_gate):
                if gate is not None:
                    await gate.acquire()
                    held.append(gate)
            asks = [(window, 1) for window in self.requests]
            if self.tokens is not None:
                asks.append((self.tokens, estimated_tokens))
            taken = await reserve(*asks)
            ticket = Ticket(self.tokens, taken[-1] if self.tokens is not None else None)
            try:
                yield ticket
            except BaseException as exc:
                ticket.failed(exc)
                raise
        finally:
            for gate in reversed(held):
                if isinstance(gate, AdaptiveGate):
                    if ticket is None:  # never sent
                        gate.release(kind, 0.0, "cancelled", None)
                    else:
                        gate.release(kind, time.monotonic() - ticket.sent, ticket.fault, ticket.retry_after)
                else:
                    gate.release()

    @asynccontextmanager
    async def _permit(self, estimated_tokens: int, panel_gate: asyncio.Semaphore | None, kind: str) -> AsyncIterator[Ticket]:
        """The desk's permit for one request (the panel's gate stays this process's own)."""
        desk = self.desk
        assert desk is not None
        async with panel_gate if panel_gate is not None else _no_gate():
            asking = desk.acquire(self.holder, estimated_tokens, kind)
            try:
                permit = await asking
            except asyncio.CancelledError:
                desk.release(asking)  # the permit may still be granted: hand it back when it is
                raise
            if permit is None:
                raise RuntimeError(f"the limits desk of {self.limit} no longer serves {self.holder!r}")
            ticket = Ticket(on_settle=lambda tokens: desk.settle(permit, tokens))
            try:
                yield ticket
            except BaseException as exc:
                ticket.failed(exc)
                raise
            finally:
                desk.release(permit, ticket.fault, ticket.retry_after)


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

    async def acquire(self, holder: str, tokens: int, kind: str = "request") -> str | None:
        stack = AsyncExitStack()
        ticket = await stack.enter_async_context(self.limiter.admit(tokens, kind=kind))
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

    async def release(self, permit: str | None, fault: str | None = None, retry_after: float | None = None) -> None:
        entry = self.permits.pop(permit, None) if permit is not None else None
        if entry is not None:
            entry[2].fault, entry[2].retry_after = fault, retry_after  # what the holder's request met
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

    def concurrency(self) -> tuple[int, int] | None:
        """An adaptive concurrency's value now, and the requests in flight; None when fixed."""
        control = self.limiter.concurrency
        return None if control is None else (control.limit, self.limiter.in_flight())


_registry: dict[tuple[str, str, str | None], Limiter] = {}
# On a cluster worker: the desks of the run's limited endpoints, and who is asking (lane@attempt).
_desks: dict[tuple[str, str, str | None], Desk] = {}
_holder = ""


def endpoint_label(key: tuple[str, str, str | None]) -> str:
    """`openai gpt-4o` or `openai qwen2.5-vl @ http://gpu1:8000/v1`: a limited endpoint, for people."""
    provider, model, base_url = key
    return f"{provider} {model}" + (f" @ {base_url}" if base_url else "")


def adaptive_concurrency(used: Iterable[Limiter]) -> dict[str, tuple[int, int]]:
    """The adaptive concurrencies among `used` now: endpoint -> (value, requests in flight)."""
    wanted = set(map(id, used))
    return {
        endpoint_label(key): (limiter.concurrency.limit, limiter.in_flight())
        for key, limiter in _registry.items()
        if limiter.concurrency is not None and id(limiter) in wanted
    }


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
