"""What went wrong with a model call, and how long to wait before asking again.

Provider clients run with their own retries off, so every fault reaches cadsynth, is counted, and is
retried under one policy: exponential backoff with full jitter, or exactly the server's Retry-After
when it names one.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import UTC, datetime
from typing import Literal

import httpx
from langchain_core.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
    OutputParserException,
)
from pydantic import ValidationError

from cadsynth.config import RetryConfig

FaultKind = Literal["rate_limited", "server_error", "timeout", "malformed"]
# What a call did after a fault: asked again, or gave up (a judge abstains; anything else is dropped).
Outcome = Literal["retried", "abstained", "dropped"]
FAULT_KEYS = ("rate_limited", "server_error", "timeout", "malformed", "retried", "abstained", "dropped")


class Malformed(ValueError):
    """An answer that arrived but cannot be used: unparseable JSON, no image, a broken image."""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    retry_after: float | None = None  # seconds the server asked for

    @property
    def transient(self) -> bool:
        return self.kind != "malformed"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def classify(exc: BaseException) -> Fault | None:
    """The fault an exception stands for, or None when asking again cannot help (auth, bad request)."""
    chain = _chain(exc)
    retry_after = next((s for s in map(retry_after_seconds, chain) if s is not None), None)
    for e in chain:
        if isinstance(e, (ModelTimeoutError, httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
            return Fault("timeout")
        if isinstance(e, ModelRateLimitError) or _status(e) == 429:
            return Fault("rate_limited", retry_after)
        if isinstance(e, (ModelConnectionError, httpx.TransportError, ConnectionError)):
            return Fault("server_error", retry_after)
        status = _status(e)
        if status is not None and status >= 500:
            return Fault("server_error", retry_after)
        if isinstance(e, ModelAPIError) and status is None:
            return Fault("server_error", retry_after)
        if status is not None and 400 <= status < 500:
            return None
    for e in chain:
        # Structured output that does not parse or validate (the client raised while parsing it).
        if isinstance(e, (Malformed, ValidationError, json.JSONDecodeError, OutputParserException)):
            return Fault("malformed")
        if type(e).__name__ in ("LengthFinishReasonError", "ContentFilterFinishReasonError"):
            return Fault("malformed")
    return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """Retry-After (or retry-after-ms) from an HTTP error, or a Gemini RetryInfo delay."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        ms = headers.get("retry-after-ms")
        if ms:
            try:
                return max(0.0, float(ms) / 1000.0)
            except ValueError:
                pass
        value = headers.get("retry-after")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                try:
                    return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
                except (TypeError, ValueError):
                    pass
    details = getattr(exc, "details", None)  # google.genai errors: the JSON error body
    if isinstance(details, dict):
        for item in (details.get("error") or {}).get("details") or []:
            delay = item.get("retryDelay") if isinstance(item, dict) else None
            match = re.fullmatch(r"([0-9.]+)s", str(delay or ""))
            if match:
                return float(match.group(1))
    return None


def backoff(policy: RetryConfig, retry: int, fault: Fault, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (0-based)."""
    if fault.retry_after is not None:
        # The server knows when it will take us again (an hour at most); jitter keeps waiters apart.
        return min(3600.0, fault.retry_after) + (rng or random).uniform(0.0, 0.05)
    ceiling = min(policy.max_delay, policy.base_delay * (2**retry))
    return (rng or random).uniform(ceiling / 2, ceiling)
