"""How much a fake server can serve: the two shapes real endpoints have near their limit.

* :class:`Serving` is a self-hosted inference server (vLLM, SGLang): it runs a fixed number of
  sequences at once, each step slower the more it runs, and queues the rest. It never refuses;
  past its capacity only the latency grows.
* :class:`RateLimited` is a paid API: a rate limit it does not publish, answered with 429 and
  the Retry-After until a request would fit; a burst far past it gets 503.

A fake given one (``FakeOpenAI(capacity=Serving(slots=16))``) serves every chat request through
it, and keeps a log of what it served at once, so a benchmark can see whether its clients stayed
within what the server could do.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from .faults import Fault


class Capacity(Protocol):
    def serve(self, stop: threading.Event) -> Fault | None:
        """Serve one request (blocking for as long as it takes), or the fault it gets instead."""
        ...


class Serving:
    """`slots` sequences served at once, the rest queued in order; a request takes `service`
    seconds alone and `slowdown` more of that for each other sequence served with it (a decode
    step's cost grows with the batch). With `max_waiting` (a proxy's queue in front of it) a
    request finding the queue full gets 503: past that, the server is over its capacity."""

    def __init__(self, slots: int = 16, service: float = 0.5, slowdown: float = 0.02, max_waiting: int | None = None):
        self.slots, self.service, self.slowdown, self.max_waiting = slots, service, slowdown, max_waiting
        self.busy = 0
        self.peak_busy = 0  # most sequences served at once
        self.peak_waiting = 0  # longest queue
        self.refused = 0  # 503s: the queue was full
        self._cond = threading.Condition()
        self._next_ticket = 0  # first come, first served
        self._serving = 0

    def serve(self, stop: threading.Event) -> Fault | None:
        with self._cond:
            queued = self._next_ticket - self._serving
            if self.max_waiting is not None and self.busy >= self.slots and queued >= self.max_waiting:
                self.refused += 1
                return Fault("503", retry_after=1.0)
            ticket = self._next_ticket
            self._next_ticket += 1
            self.peak_waiting = max(self.peak_waiting, ticket - self._serving)
            self._cond.wait_for(lambda: self._serving == ticket and self.busy < self.slots)
            self._serving += 1
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
            batch = self.busy
            self._cond.notify_all()  # the next in line may fit too
        try:
            stop.wait(self.service * (1 + self.slowdown * (batch - 1)))
        finally:
            with self._cond:
                self.busy -= 1
                self._cond.notify_all()
        return None

    @property
    def best_throughput(self) -> float:
        """Requests a second with every slot busy: what no client can beat."""
        return self.slots / (self.service * (1 + self.slowdown * (self.slots - 1)))


class RateLimited:
    """A hidden limit of `rate` requests a second (a bucket of one second's worth), each served in
    `latency` seconds; a request past it gets 429 with the seconds until one would fit, and one
    arriving when more than `surge` came in the last second gets 503."""

    def __init__(self, rate: float = 20.0, latency: float = 0.4, surge: float | None = None):
        self.rate, self.latency = rate, latency
        self.surge = surge if surge is not None else 3 * rate
        self.tokens = rate
        self.refilled = time.monotonic()
        self.arrivals: deque[float] = deque()
        self.served: list[float] = []  # when each accepted request arrived (the log)
        self.refused = {"429": 0, "503": 0}
        self._lock = threading.Lock()

    def serve(self, stop: threading.Event) -> Fault | None:
        with self._lock:
            now = time.monotonic()
            self.arrivals.append(now)
            while self.arrivals and self.arrivals[0] < now - 1.0:
                self.arrivals.popleft()
            if len(self.arrivals) > self.surge:
                self.refused["503"] += 1
                return Fault("503", retry_after=1.0)
            self.tokens = min(self.rate, self.tokens + (now - self.refilled) * self.rate)
            self.refilled = now
            if self.tokens < 1.0:
                self.refused["429"] += 1
                return Fault("429", retry_after=round((1.0 - self.tokens) / self.rate, 3))
            self.tokens -= 1.0
            self.served.append(now)
        stop.wait(self.latency)
        return None

    def busiest_second(self) -> int:
        """The most requests accepted in any one second."""
        served, most, start = sorted(self.served), 0, 0
        for end, at in enumerate(served):
            while served[start] < at - 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most
