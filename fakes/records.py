"""What a fake provider server saw: one record per request, and thread-safe counters.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks; tests and benchmarks read these
records (``srv.requests``, ``srv.stats.snapshot()``) to see what the client really sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestRecord:
    """What one request looked like, as the fake server saw it."""

    seq: int
    method: str
    path: str
    route: str
    headers: dict[str, str]  # lower-case names
    body: Any = None
    model: str | None = None
    api_key: str | None = None  # Bearer token (OpenAI) / x-goog-api-key (Gemini)
    has_images: bool = False
    image_sha256: list[str] = field(default_factory=list)
    image_mime: list[str] = field(default_factory=list)
    response_format: str | None = None  # json_schema | json_object | text | None
    mode: str | None = None  # json_schema | json_object | tool | text
    tool_choice: Any = None
    stream: bool = False
    status: int | None = None
    fault: str | None = None
    error: str | None = None  # why the request was rejected (4xx)
    started: float = 0.0  # time.monotonic() when the request arrived
    finished: float | None = None  # ... and when its handling ended

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class Stats:
    """Thread-safe counters. ``requests`` counts every request received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.rejected = 0  # 4xx answers produced by validation / auth
        self.errors: list[str] = []  # bugs inside the fake or a responder
        self.in_flight = 0  # requests being handled right now
        self.max_in_flight = 0  # the most ever handled at once

    def _add_request(self, route: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1

    def _add_status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def _add_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _add_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def _add_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_route": dict(self.by_route),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()),
                "rejected": self.rejected,
                "errors": list(self.errors),
                "max_in_flight": self.max_in_flight,
            }

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_route.clear()
            self.by_status.clear()
            self.faults.clear()
            self.rejected = 0
            self.errors.clear()
            self.max_in_flight = 0
