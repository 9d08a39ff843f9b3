"""One model call, done safely: cache, limits, retries, fault accounting and cost.

`Caller.call` runs a send function under the agent's policy and returns the answer with every
request it took (`Attempt`s: what was paid, what failed and what was done about it). A call that
gives up raises `CallFailed` with the same record, so the graph can log it and carry on; one whose
endpoint never answered raises `EndpointUnreachable`, which stops the run. Once the process is
stopping (`InFlight.stop`), a call not yet sent raises `CallRefused`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from cadsynth.agents import jsontext
from cadsynth.agents.faults import Fault, FaultKind, Outcome, Refusal, backoff, classify, reason, refusal, why
from cadsynth.agents.limits import Limiter
from cadsynth.agents.batch import BatchDesk, BatchDetached, BatchJobsFailing
from cadsynth.config import AgentConfig, Price, RetryConfig

T = TypeVar("T")

CACHE_VERSION = 2  # bump when what a fingerprint covers changes (2: the schema by its digest)

# A server that refuses connections through a call's retries is down. One that only times out may
# be slow under load: it is taken for down when this many calls in a row got not one answer.
SILENT_CALLS = 3


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Attempt:
    """One request (or one cache hit): its tokens and cost, its fault, and what followed it."""

    usage: Usage = Usage()
    cost_usd: float = 0.0
    cached: bool = False
    fault: FaultKind | None = None
    outcome: Outcome | None = None
    detail: str | None = None  # why a malformed answer was refused
    batch: bool = False  # sent in a provider batch job, at its price
    online_cost_usd: float | None = None  # a batched request's cost at the online price


@dataclass(frozen=True)
class Reply(Generic[T]):
    value: T
    usage: Usage  # of the request that answered (zero for a cache hit)
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def cached(self) -> bool:
        return any(a.cached for a in self.attempts)


class CallFailed(RuntimeError):
    """The call gave up; `attempts` says what it cost and why."""

    def __init__(self, agent: str, fault: FaultKind, attempts: list[Attempt]):
        super().__init__(f"agent {agent}: gave up after {len(attempts)} request(s), last fault {fault}")
        self.agent = agent
        self.fault = fault
        self.attempts = tuple(attempts)


class ModelCallError(RuntimeError):
    """A fault no retry can fix (a rejected key, an unknown model, a request the server refuses);
    `refusal` says which, in the server's words (the key blanked)."""

    def __init__(self, message: str, refusal: Refusal | None = None):
        super().__init__(message)
        self.refusal = refusal


class EndpointUnreachable(ModelCallError):
    """Every request of a call went unanswered (refused, dropped, timed out); `attempts` says what
    the call cost, the last one with the give-up outcome."""

    def __init__(self, message: str, attempts: list[Attempt]):
        super().__init__(message)
        self.attempts = tuple(attempts)


class CallRefused(RuntimeError):
    """Not sent: the process is stopping. Nothing of the call was paid for; a resumed run makes it."""


class InFlight:
    """The model calls a process has sent and not yet finished, and whether it may start more.

    Once `stop()` is called (a signal: cadsynth.runner), a call whose first request has not gone out
    is refused, and a call already sent finishes, retries and all: what was paid for comes back,
    and a resumed run never sends one of a call's requests again under the same ledger key.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.calls: set[object] = set()

    def stop(self) -> None:
        self.stopping = True

    def sending(self, call: object) -> None:
        """A request of `call` leaves now (it holds its permits); the first of a call that would
        start while the process stops is refused."""
        if call not in self.calls:
            if self.stopping:
                raise CallRefused("not sent: the run is stopping")
            self.calls.add(call)

    def finished(self, call: object) -> None:
        self.calls.discard(call)


# Where an agent without base_url sends its requests (the SDKs' defaults), for error messages.
DEFAULT_ENDPOINTS = {"openai": "api.openai.com", "google": "generativelanguage.googleapis.com"}


def endpoint(agent: AgentConfig) -> str:
    """The agent's server, fit to print: no credentials a URL may carry (user:pass@, ?key=)."""
    if not agent.base_url:
        return DEFAULT_ENDPOINTS.get(agent.provider, agent.provider)
    parts = urlsplit(agent.base_url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _redact(text: str, agent: AgentConfig) -> str:
    """Error text with the agent's key blanked: some servers echo it back, some URLs carry it."""
    var = agent.needs_key()
    key = os.environ.get(var) if var else None
    return text.replace(key, "***") if key and len(key) >= 4 else text


class CallCache(Protocol):
    """Stored answers by fingerprint (store.cache.CallCache)."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, agent: AgentConfig, value: dict[str, Any], usage: Usage) -> None: ...


def usage_of(message: Any) -> Usage:
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0))


def _usage_from_error(exc: BaseException) -> Usage:
    """A 200 answer the client could not parse was still billed: its usage is in the body."""
    for e in (exc, exc.__cause__):
        usage = getattr(e, "usage", None)
        if isinstance(usage, Usage):
            return usage
        response = getattr(e, "response", None)
        if getattr(response, "status_code", None) == 200:
            try:
                body = response.json()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - any unreadable body just means unknown usage
                continue
            u = body.get("usage") or {} if isinstance(body, dict) else {}
            return Usage(int(u.get("prompt_tokens", 0) or 0), int(u.get("completion_tokens", 0) or 0))
    return Usage()


@functools.cache
def schema_digest(schema: type[Any]) -> str:
    """The sha256 of a structured-output schema's JSON: what a fingerprint holds of it, made once
    per class (the schema is the same for every call that asks for it)."""
    return hashlib.sha256(json.dumps(schema.model_json_schema(), sort_keys=True).encode()).hexdigest()


def fingerprint(agent: AgentConfig, messages: list[BaseMessage], **details: Any) -> str:
    """Everything that decides an answer, images by their sha256: equal fingerprints, equal calls.

    The agent's name is in it: two panel members on the same model must not share answers (a jury
    of copies would agree by construction).
    """

    def part(p: Any) -> Any:
        if isinstance(p, dict) and p.get("type") == "image":
            return {"image": hashlib.sha256(base64.b64decode(p["base64"])).hexdigest()}
        return p

    rendered = [
        {"role": m.type, "content": [part(p) for p in m.content] if isinstance(m.content, list) else m.content}
        for m in messages
    ]
    payload = {
        "v": CACHE_VERSION,
        "agent": agent.name,
        "provider": agent.provider,
        "model": agent.model,
        "base_url": agent.base_url,
        "temperature": agent.temperature,
        "messages": rendered,
        **details,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# A rough per-image token charge, so limits and dry runs count images the way vision APIs do.
IMAGE_TOKENS = 765


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """Tokens a request will take, before it is sent: about 4 characters a token, plus each image."""
    chars, images = 0, 0
    for message in messages:
        content = message.content
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            if isinstance(part, str):
                chars += len(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                chars += len(str(part.get("text", "")))
            elif isinstance(part, dict):
                images += 1
    return math.ceil(chars / 4) + IMAGE_TOKENS * images


Send = Callable[[list[BaseMessage]], Awaitable[tuple[Any, Usage]]]


class Caller:
    """An agent's way of making calls: its retry policy, limiter, price and the panel's gate."""

    def __init__(
        self,
        agent: AgentConfig,
        retry: RetryConfig,
        limiter: Limiter,
        price: Price | None,
        gate: asyncio.Semaphore | None,
        in_flight: InFlight | None = None,
        desk: BatchDesk | None = None,
        fallback: str = "batch",
    ):
        self.agent = agent
        self.retry = retry
        self.limiter = limiter
        self.price = price
        self.gate = gate
        self.in_flight = in_flight or InFlight()
        # Where the agent's requests go in provider batch jobs (agents.batch), if it batches; with
        # fallback "online" a request a job did not answer is asked again online.
        self.desk = desk
        self.fallback = fallback

    def cost(self, usage: Usage, batch: bool = False) -> float:
        if self.price is None:
            return 0.0
        price = self.price.batched() if batch else self.price
        return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1e6

    def _attempt(
        self, usage: Usage, fault: FaultKind | None = None, outcome: Outcome | None = None, exc: BaseException | None = None,
        batch: bool = False,
    ) -> Attempt:
        detail = why(exc) if fault == "malformed" and exc is not None else None
        return Attempt(
            usage=usage, cost_usd=self.cost(usage, batch), fault=fault, outcome=outcome, detail=detail, batch=batch,
            online_cost_usd=self.cost(usage) if batch else None,
        )

    async def _request(self, send: Send, messages: list[BaseMessage], call: object, kind: str) -> tuple[Any, Usage]:
        estimate = estimate_tokens(messages)
        async with self.limiter.admit(estimate, self.gate, kind) as ticket:
            # Here, not before the permits: a call that waited for them while the run began to stop is not sent.
            self.in_flight.sending(call)
            try:
                # The client's own timeout should fire first; this only stops a client that never does.
                async with asyncio.timeout(self.agent.timeout * 1.5 + 5):
                    value, usage = await send(messages)
            except BaseException as exc:
                ticket.settle(max(estimate, _usage_from_error(exc).total))
                raise
            ticket.settle(usage.total)
        return value, usage

    def _unreachable(self, fault: Fault, exc: BaseException, attempts: list[Attempt]) -> EndpointUnreachable:
        agent = self.agent
        why = f"no answer within {agent.timeout:g}s" if fault.kind == "timeout" else reason(exc)
        n = f"{len(attempts)} attempt{'s' * (len(attempts) != 1)}"
        message = f"agent {agent.name!r} cannot reach {endpoint(agent)} ({fault.kind}: {why} after {n})"
        return EndpointUnreachable(_redact(message, agent), attempts)

    async def call(
        self, send: Send, messages: list[BaseMessage], *, give_up: Outcome, json_text: bool = False, kind: str = "request"
    ) -> Reply[Any]:
        """Send until answered: transient faults back off and retry, a malformed answer is asked once more.

        In json_text mode the second ask carries the model's bad answer and the parse error. Once
        the process is stopping, a call whose first request has not left is refused (CallRefused).
        `kind` (the role asking) is what the endpoint's limiter sorts latencies by. A batching
        agent's requests go in provider batch jobs (agents.batch), outside the limiter: thousands
        wait at once, and none of them holds a connection.
        """
        call = object()  # this call: in flight from its first request until it returns
        try:
            return await self._until_answered(call, send, messages, give_up=give_up, json_text=json_text, kind=kind)
        finally:
            self.in_flight.finished(call)

    async def _until_answered(
        self, call: object, send: Send, messages: list[BaseMessage], *, give_up: Outcome, json_text: bool, kind: str
    ) -> Reply[Any]:
        attempts: list[Attempt] = []
        transient, reasked = 0, False
        by_batch = self.desk is not None and await self.desk.usable()
        while True:
            shared = False
            try:
                if by_batch:
                    assert self.desk is not None
                    self.in_flight.sending(call)  # a request in a job is in flight too
                    value, usage, shared = await self.desk.carry(send, messages, self.agent.name)
                else:
                    value, usage = await self._request(send, messages, call, kind)
            except (ModelCallError, BatchDetached, CallRefused):
                raise  # a fault no retry can fix; the run stopping once its jobs are sent (--detach), or on a signal
            except BatchJobsFailing as exc:
                raise ModelCallError(_redact(f"agent {self.agent.name!r}: {exc}", self.agent)) from exc
            except Exception as exc:
                fault = classify(exc)
                batched = by_batch
                if by_batch and self.fallback == "online" and fault is not None and fault.kind != "malformed":
                    by_batch = False  # errored or expired in its job: `batch_fallback: online` asks it online
                if fault is not None and fault.kind not in ("unreachable", "timeout"):
                    self.limiter.unanswered_calls = 0  # the server answered, if not well
                if fault is None:
                    # Authentication, an unknown model, a bad request: retrying cannot help, and
                    # carrying on would turn every call of the run into a silent drop.
                    first = (str(exc).strip().splitlines() or [""])[0][:300]
                    agent = self.agent
                    refused = refusal(exc)
                    raise ModelCallError(
                        _redact(f"agent {agent.name!r} ({agent.provider} {agent.model}): {type(exc).__name__}: {first}", agent),
                        Refusal(refused.about, refused.status, _redact(refused.message, agent)),
                    ) from exc
                usage = _usage_from_error(exc)
                if fault.transient and transient + 1 < self.retry.attempts:
                    attempts.append(self._attempt(usage, fault.kind, "retried", batch=batched))
                    await asyncio.sleep(backoff(self.retry, transient, fault))
                    transient += 1
                    continue
                if not fault.transient and not reasked:
                    reasked = True
                    attempts.append(self._attempt(usage, fault.kind, "retried", exc, batch=batched))
                    if json_text:
                        answer = getattr(exc, "answer", None) or "(empty)"
                        messages = [*messages, AIMessage(content=answer), HumanMessage(content=jsontext.reask(str(exc)))]
                    continue
                attempts.append(self._attempt(usage, fault.kind, give_up, exc, batch=batched))
                if all(a.fault in ("unreachable", "timeout") for a in attempts):
                    # Not one answer: if the server is down or misconfigured, every other call to it
                    # would spend its retries the same way. Stop the run rather than drop them all.
                    self.limiter.unanswered_calls += 1
                    if fault.kind == "unreachable" or self.limiter.unanswered_calls >= SILENT_CALLS:
                        raise self._unreachable(fault, exc, attempts) from exc
                raise CallFailed(self.agent.name, fault.kind, attempts) from exc
            self.limiter.unanswered_calls = 0
            # An identical request of another call answered this one: paid once, recorded there.
            attempts.append(Attempt(cached=True) if shared else self._attempt(usage, batch=by_batch))
            return Reply(value, usage, tuple(attempts))


def cached_reply(value: Any) -> Reply[Any]:
    return Reply(value, Usage(), (Attempt(cached=True),))


__all__ = [
    "Attempt",
    "CallCache",
    "CallFailed",
    "CallRefused",
    "Caller",
    "EndpointUnreachable",
    "ModelCallError",
    "Fault",
    "InFlight",
    "Reply",
    "Usage",
    "cached_reply",
    "fingerprint",
    "usage_of",
]
