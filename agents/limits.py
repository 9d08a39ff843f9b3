"""Provider limits, shared by every agent and task in the process that calls the same model.

A `Limiter` is keyed by (provider, model, base_url): two agents on one gpt-4o account draw from one
budget of requests, tokens and connections. Requests per minute use LangChain's token bucket;
concurrency is an asyncio semaphore; tokens per minute are a sliding window of reservations, made
from an estimate before the call and corrected with the provider's usage after it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from langchain_core.rate_limiters import InMemoryRateLimiter

from cadsynth.config import Limit

WINDOW = 60.0


class TokenWindow:
    """Tokens used in the last minute; a call waits until its estimate fits under the limit."""

    def __init__(self, tpm: int, window: float = WINDOW):
        self.tpm = tpm
        self.window = window
        self.entries: deque[list[float]] = deque()  # [time, tokens]

    def _used(self, now: float) -> float:
        while self.entries and self.entries[0][0] <= now - self.window:
            self.entries.popleft()
        return sum(tokens for _, tokens in self.entries)

    async def reserve(self, tokens: int) -> list[float]:
        while True:
            now = time.monotonic()
            # One event loop runs the calls, so nothing can slip in between the check and the append.
            if self._used(now) + tokens <= self.tpm or not self.entries:
                entry = [now, float(tokens)]
                self.entries.append(entry)
                return entry
            await asyncio.sleep(min(1.0, max(0.01, self.entries[0][0] + self.window - now)))

    @staticmethod
    def settle(entry: list[float], tokens: int) -> None:
        entry[1] = float(tokens)


@dataclass
class Ticket:
    """One admitted request; `settle` replaces its token estimate with the real usage."""

    window: TokenWindow | None
    entry: list[float] | None

    def settle(self, tokens: int) -> None:
        if self.window is not None and self.entry is not None:
            self.window.settle(self.entry, tokens)


class Limiter:
    def __init__(self, limit: Limit | None):
        self.limit = limit
        self.requests = (
            InMemoryRateLimiter(requests_per_second=limit.rpm / 60.0, check_every_n_seconds=0.02, max_bucket_size=1)
            if limit and limit.rpm
            else None
        )
        self.tokens = TokenWindow(limit.tpm) if limit and limit.tpm else None
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
        held: list[asyncio.Semaphore] = []
        try:
            for gate in (self._gate(), panel_gate):
                if gate is not None:
                    await gate.acquire()
                    held.append(gate)
            entry = await self.tokens.reserve(estimated_tokens) if self.tokens else None
            if self.requests is not None:
                await self.requests.aacquire()
            yield Ticket(self.tokens, entry)
        finally:
            for gate in reversed(held):
                gate.release()


_registry: dict[tuple[str, str, str | None], Limiter] = {}


def limiter_for(provider: str, model: str, base_url: str | None, limit: Limit | None) -> Limiter:
    """The process-wide limiter of one model on one server.

    Every agent of a run sees the same limits; a config that declares other limits for the same
    model (a later run in this process) gets a fresh limiter.
    """
    key = (provider, model, base_url)
    if key not in _registry or _registry[key].limit != limit:
        _registry[key] = Limiter(limit)
    return _registry[key]
