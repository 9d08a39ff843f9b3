"""What went wrong with a model call, and how long to wait before asking again.

Provider clients run with their own retries off, so every fault reaches cadsynth, is counted, and is
retried under one policy: exponential backoff with full jitter, or exactly the server's Retry-After
when it names one.

Classification does not depend on any one HTTP library. SDKs change transports under us (google-genai
moved from httpx to its fork httpx2, whose classes are not httpx's), so an exception is judged by what
survives such a move: LangChain's Model*Error types, HTTP status codes, the stdlib's socket errors, and
the *names* in its class hierarchy (httpx, httpx2, httpcore, aiohttp, requests and urllib3 all call a
timeout ...Timeout/...TimeoutError and a lost connection ...ConnectError/...ConnectionError).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import UTC, datetime
from typing import Literal

from langchain_core.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
    OutputParserException,
)
from pydantic import ValidationError

from cadsynth.config import RetryConfig
from cadsynth.text import clean

# unreachable: no answer came back because there was no connection (refused, reset, DNS, dropped
# before the response); timeout: a connection, but no answer in time; server_error: an answer, 5xx.
# expired: a provider batch job did not answer the request (it expired, or the job failed or was cancelled).
FaultKind = Literal["rate_limited", "server_error", "timeout", "unreachable", "malformed", "expired"]
# What a call did after a fault: asked again, or gave up (a judge abstains; anything else is dropped).
Outcome = Literal["retried", "abstained", "dropped"]
FAULT_KEYS = (
    "rate_limited", "server_error", "timeout", "unreachable", "malformed", "expired", "retried", "abstained", "dropped"
)

# Class-name endings, matched along an exception's MRO, most specific class first: the first class
# that matches either list decides. Order matters for urllib3, whose NewConnectionError (refused)
# subclasses ConnectTimeoutError, and for requests' ConnectTimeout, a ConnectionError too.
_TIMEOUT_NAMES = ("Timeout", "TimeoutError", "TimeoutException")
_CONNECTION_NAMES = (
    "ConnectError",  # httpx, httpx2, httpcore
    "ConnectionError",  # stdlib, requests, aiohttp Client/ServerConnectionError, openai APIConnectionError
    "ConnectorError",  # aiohttp ClientConnectorError
    "DisconnectedError",  # aiohttp ServerDisconnectedError
    "RemoteProtocolError",  # httpx: the server closed the connection without an answer
    "ReadError",
    "WriteError",
    "NetworkError",
    "TransportError",  # httpx's base of the above (and google-auth's)
)


class Malformed(ValueError):
    """An answer that arrived but cannot be used: unparseable JSON, no image, a broken image."""


class LostInBatch(RuntimeError):
    """A request a provider batch job did not answer: it expired, or its job failed whole or was
    cancelled. Asking again sends it in a later job (or online, with `batch_fallback: online`)."""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    retry_after: float | None = None  # seconds the server asked for

    @property
    def transient(self) -> bool:
        return self.kind != "malformed"


def _chain(exc: BaseException) -> list[BaseException]:
    # __context__ even under `raise ... from None`: httpcore re-raises its ConnectError that way,
    # and the socket error below it is what says "connection refused".
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _status(exc: BaseException) -> int | None:
    """The HTTP status an error carries: openai's status_code, aiohttp's status, google-genai's code."""
    for attr in ("status_code", "status", "code"):  # aiohttp deprecates .code for .status
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) and 100 <= code < 600 else None


def _by_name(exc: BaseException) -> FaultKind | None:
    for cls in type(exc).__mro__:
        if cls.__name__.endswith(_TIMEOUT_NAMES):
            return "timeout"
        if cls.__name__.endswith(_CONNECTION_NAMES):
            return "unreachable"
    return None


def _kind(exc: BaseException) -> FaultKind | Literal["fatal"] | None:
    """What this one exception says: a fault, "fatal" (a 4xx retrying cannot fix), or nothing."""
    if isinstance(exc, Malformed):
        return "malformed"  # an answer arrived, whatever went wrong below (PIL raises bare OSErrors)
    if isinstance(exc, ModelTimeoutError):
        return "timeout"
    if isinstance(exc, ModelRateLimitError):
        return "rate_limited"
    if isinstance(exc, ModelConnectionError):
        return "unreachable"
    status = _status(exc)
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    if status is not None and status >= 400:
        return "fatal"
    if isinstance(exc, ModelAPIError):
        return "server_error"  # a 5xx whose status the integration did not keep
    by_name = _by_name(exc)  # also the stdlib's TimeoutError (= asyncio's) and ConnectionError family
    if by_name:
        return by_name
    # DNS failures, and a bare OSError (anyio's "All connection attempts failed"). Not OSError's
    # subclasses: FileNotFoundError and the like are not the network.
    if isinstance(exc, (socket.gaierror, socket.herror)) or type(exc) is OSError:
        return "unreachable"
    return None


def classify(exc: BaseException) -> Fault | None:
    """The fault an exception stands for, or None when asking again cannot help (auth, bad request).

    The outermost exception that says something decides; its causes are looked at in turn.
    """
    chain = _chain(exc)
    if any(isinstance(e, LostInBatch) for e in chain):
        return Fault("expired")  # under the client's own wrapper (openai's APIConnectionError)
    for e in chain:
        kind = _kind(e)
        if kind == "fatal":
            return None
        if kind is not None:
            # Only an answer can name a delay (Retry-After, RetryInfo); it may sit on a wrapped error.
            answered = kind in ("rate_limited", "server_error")
            return Fault(kind, next((s for s in map(retry_after_seconds, chain) if s is not None), None) if answered else None)
    for e in chain:
        # Structured output that does not parse or validate (the client raised while parsing it).
        if isinstance(e, (ValidationError, json.JSONDecodeError, OutputParserException)):
            return Fault("malformed")
        if type(e).__name__ in ("LengthFinishReasonError", "ContentFilterFinishReasonError"):
            return Fault("malformed")
    return None


@dataclass(frozen=True)
class Refusal:
    """A request the server answered with a 4xx no retry can fix: what it is about, its status and
    the server's own words."""

    about: Literal["key", "model", "request"]
    status: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


def _server_words(exc: BaseException) -> str:
    """The message in an error's body (openai's `body`, google-genai's `message`), else its first line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def refusal(exc: BaseException) -> Refusal:
    """What a refused request (classify() gave None) was refused for: its key (401, 403, Gemini's
    400 API_KEY_INVALID), a model the server does not have (404), or the request itself."""
    for e in _chain(exc):
        status = _status(e)
        if status is None or not 400 <= status < 500:
            continue
        words = clean(_server_words(e))[:200]
        if status in (401, 403) or "API_KEY_INVALID" in json.dumps(getattr(e, "details", None), default=str):
            return Refusal("key", status, words)
        return Refusal("model" if status == 404 else "request", status, words)
    return Refusal("request", None, clean(_server_words(exc))[:200])


def reason(exc: BaseException) -> str:
    """A few words on why a connection failed, from the socket error at the bottom of the chain."""
    chain = _chain(exc)
    for e in reversed(chain):
        if isinstance(e, socket.gaierror):
            return f"cannot resolve the host ({e.strerror or e})"
        if isinstance(e, OSError) and isinstance(e.errno, int) and e.errno > 0:
            return os.strerror(e.errno).lower()  # "connection refused", "connection reset by peer"
    last = chain[-1]
    text = (str(last).strip().splitlines() or [""])[0][:200].rstrip(".")
    return text or type(last).__name__


def why(exc: BaseException) -> str:
    """One line on why an answer was refused: the first problem validation found (where and what),
    else the error's first line. Cleaned and cut short: it may quote what the model wrote."""
    for e in _chain(exc):
        if isinstance(e, ValidationError):
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the answer"
            more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
            return clean(f"{e.title}.{where}: {first['msg']}{more}")[:300]
    return clean((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]


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
