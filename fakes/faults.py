"""Fault plans for the fake provider servers: which request fails, and how.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. A :class:`FaultPlan` makes them
misbehave the way the real services do (rate limits, server errors, hangs, dropped connections,
answers that do not parse), from a queue or at a seeded random rate.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass

#: Every fault kind the servers understand.
#:  429        rate limited (``Retry-After`` header on the OpenAI fake,
#:             ``RetryInfo`` in the error body on the Gemini fake)
#:  500 / 503  server errors with the provider's error body
#:  hang       no answer; the connection is closed after ``hang_seconds``
#:             (or at once when the server stops)
#:  drop       the connection is closed at once without any answer
#:  malformed  200 OK whose JSON answer is truncated (invalid JSON)
#:  fenced     200 OK whose answer is prose + a ```json fenced block
#:             (function calling: no tool call, the fenced JSON as content)
#:  empty      200 OK with empty content and no tool call
FAULT_KINDS = ("429", "500", "503", "hang", "drop", "malformed", "fenced", "empty")
HTTP_FAULTS = frozenset({"429", "500", "503", "hang", "drop"})
CONTENT_FAULTS = frozenset({"malformed", "fenced", "empty"})


@dataclass(frozen=True)
class Fault:
    """One injected fault. ``None`` fields fall back to the plan's defaults."""

    kind: str
    retry_after: float | None = None
    hang_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")


class FaultPlan:
    """Deterministic fault schedule, safe to share between handler threads.

    Faults come first from the explicit ``queue`` (one per request, in order),
    then, once the queue is empty, from a seeded random draw: each request is
    faulted with probability ``rate`` and the kind is chosen uniformly from
    ``kinds``.  With requests arriving one at a time the sequence is fully
    reproducible for a given seed (concurrent arrivals are ordered by the OS).
    """

    def __init__(
        self,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Iterable[str] = ("429", "500", "hang", "malformed", "fenced"),
        *,
        queue: Iterable[str | Fault] = (),
        retry_after: float = 1,
        hang_seconds: float = 10.0,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        for k in self.kinds:
            Fault(k)  # validates
        if rate > 0 and not self.kinds:
            raise ValueError("a positive rate needs at least one kind")
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self._rng = random.Random(seed)
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        self.push(*queue)

    @staticmethod
    def _as_fault(f: str | Fault) -> Fault:
        return f if isinstance(f, Fault) else Fault(str(f))

    def push(self, *faults: str | Fault) -> None:
        """Append faults for the next requests (after those already queued)."""
        items = [self._as_fault(f) for f in faults]
        with self._lock:
            self._queue.extend(items)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def draw(self) -> Fault | None:
        """The fault for the next request, or None (a normal answer)."""
        with self._lock:
            if self._queue:
                f = self._queue.pop(0)
            elif self.rate > 0 and self._rng.random() < self.rate:
                f = Fault(self._rng.choice(self.kinds))
            else:
                return None
        return Fault(
            f.kind,
            retry_after=self.retry_after if f.retry_after is None else f.retry_after,
            hang_seconds=self.hang_seconds if f.hang_seconds is None else f.hang_seconds,
        )


# What the content faults make of an answer.


def fence(obj_text: str) -> str:
    """The answer as a chatty model might write it: prose + fenced JSON."""
    try:
        pretty = json.dumps(json.loads(obj_text), indent=2)
    except ValueError:
        pretty = obj_text
    return (
        "Sure! Here is the JSON you asked for:\n\n```json\n"
        + pretty
        + "\n```\n\nLet me know if you need anything else."
    )


def truncate(text: str) -> str:
    """Cut an answer in half so that it no longer parses as JSON."""
    if len(text) <= 1:
        return "{"
    return text[: max(1, len(text) // 2)]
