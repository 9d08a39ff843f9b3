"""Provider batch jobs: a phase's calls sent together at the batch price, answered when the job is done.

A batching agent's call (config `batch: true`) goes the way an online call goes: LangChain builds
the request and parses the answer. Only the HTTP request is not sent: the model's transport
(`BatchTransport`) hands its body to the agent's `BatchDesk`, which gathers the requests of a phase
(every call in flight at once, over all problems and lanes) until no new one has come for
`batching.gather` seconds, or a job is full; stores the job with its requests (store.batches)
before it is sent; sends it (agents.batch_providers: OpenAI's Batch API, Gemini's batch mode);
polls it; and answers each request with the body the job's answer holds, as if the server had
answered online.

So nothing is paid twice: a process killed at any moment leaves its jobs in the store, and the next
one finds them (`cads resume`): a call whose request is in a job still open waits for that job, one
whose answer was collected reads it from the store. A request the job did not answer (it expired,
or its job failed whole) is a fault (`expired`) the caller asks again, in a later job.
With `--detach` the run stops once its jobs are sent (`BatchDetached`; the run waits for batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from cadsynth.agents.batch_providers import Answer, GeminiBatches, OpenAIBatches, Polled
from cadsynth.agents.faults import LostInBatch, backoff, classify
from cadsynth.config import AgentConfig, BatchConfig, RetryConfig

# The run a call is made for (graphs.calls.ask sets it): a request is kept under its run, so a
# resumed run finds its own answers and never another run's.
RUN: contextvars.ContextVar[str] = contextvars.ContextVar("cads_batch_run", default="")


# Who hears what a call waits on while its request is in a batch job (graphs.calls.ask: the node's
# custom stream, which Studio shows): a wait of hours reads as a state, not a hang.
HEARS: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("cads_batch_hears", default=None)


@contextlib.contextmanager
def for_run(run: str, hears: Callable[[str], None] | None = None) -> Iterator[None]:
    token, heard = RUN.set(run), HEARS.set(hears)
    try:
        yield
    finally:
        HEARS.reset(heard)
        RUN.reset(token)


class BatchDetached(Exception):
    """`--detach`: the run's calls wait in provider jobs; it stops here, and `cads resume` collects them."""


class BatchJobsFailing(RuntimeError):
    """Jobs to one endpoint failed whole, one after another: the run stops with this line."""


@dataclass
class Ticket:
    """One request of a call on its way through the batch: who asks, and whether an identical
    request of another call answered it (then this call paid nothing)."""

    desk: BatchDesk
    run: str
    agent: str
    shared: bool = False


TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("cads_batch_ticket", default=None)


class BatchTransport(httpx.AsyncBaseTransport):
    """A chat model's HTTP transport: a chat completion whose call holds a ticket goes to the batch
    desk, and its answer comes back as the HTTP response the server would have sent; every other
    request goes out as it came."""

    def __init__(self, online: httpx.AsyncBaseTransport):
        self.online = online

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ticket = TICKET.get()
        if ticket is None or request.method != "POST" or not request.url.path.endswith(ticket.desk.provider.PATH_END):
            return await self.online.handle_async_request(request)
        body = json.loads(await request.aread())
        status, answer = await ticket.desk.ask(ticket, body)
        return httpx.Response(status, json=answer, request=request)

    async def aclose(self) -> None:
        await self.online.aclose()


def request_key(run: str, agent: str, body: dict[str, Any]) -> str:
    """A request's custom id: its run, agent and body, hashed. The same call asked again (a resumed
    run) has the same key; two agents on one model, or two runs, never share one."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{run}\n{agent}\n{text}".encode()).hexdigest()


def _future() -> asyncio.Future[tuple[int, dict[str, Any]]]:
    """A request's answer to come. Its error counts as read: a job recovered for another run, or a
    call cancelled meanwhile, may leave nobody to read it."""
    future: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


@dataclass
class _Job:
    id: str
    keys: list[tuple[str, str]]  # (run, key) of each request
    done: int = 0  # requests the provider has finished, as last polled
    state: str = "submitted"
    provider_id: str | None = None
    since: float = field(default_factory=time.time)


class BatchDesk:
    """The batch jobs to one endpoint and model under one key, shared by the agents that call it in
    this process (and by the lanes of a run)."""

    def __init__(self, agent: AgentConfig, office: BatchOffice):
        from cadsynth.agents.calls import endpoint

        self.office = office
        self.settings: BatchConfig = office.settings
        self.provider: OpenAIBatches | GeminiBatches = GeminiBatches(agent) if agent.provider == "google" else OpenAIBatches(agent)
        self.ident = {"provider": agent.provider, "endpoint": endpoint(agent), "model": agent.model}
        self._usable: bool | None = None
        self._probing = asyncio.Lock()
        self._recovered: asyncio.Task[None] | None = None
        self._live: dict[tuple[str, str], asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._claimed: set[tuple[str, str]] = set()  # live requests a call already waits on
        self._pending: list[tuple[tuple[str, str], bytes]] = []
        self._pending_bytes = 0
        self._first = 0.0  # when the oldest request gathering now came (the loop's clock)
        self._timer: asyncio.TimerHandle | None = None
        self.sending = 0  # jobs being stored and sent right now
        self.jobs: dict[str, _Job] = {}  # jobs in flight, by id
        self._job_of: dict[tuple[str, str], _Job] = {}  # the job each live request went in
        self._failures = 0  # jobs in a row that failed whole
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- what a call sees ----------------------------------------------------------------------

    async def usable(self) -> bool:
        """Whether this endpoint takes batch jobs (asked once); a server without them answers online."""
        async with self._probing:  # the calls of a phase all ask at once: one of them asks the server
            if self._usable is None:
                self._usable = await self.provider.supported()
        return self._usable

    async def carry(self, send: Callable[[Any], Awaitable[tuple[Any, Any]]], messages: Any, agent: str) -> tuple[Any, Any, bool]:
        """`send(messages)` with its request going by batch: (value, usage, shared)."""
        ticket = Ticket(self, RUN.get(), agent)
        token = TICKET.set(ticket)
        try:
            value, usage = await send(messages)
        except Exception as exc:
            # The client wraps what the transport raised (openai: APIConnectionError); a stop is no fault.
            cause: BaseException | None = exc
            while cause is not None:
                if isinstance(cause, BatchDetached | BatchJobsFailing):
                    raise cause from None
                cause = cause.__cause__ or cause.__context__
            raise
        finally:
            TICKET.reset(token)
        return value, usage, ticket.shared

    async def ask(self, ticket: Ticket, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The answer to one request: collected before (a resumed run), from a job still open, or
        from a new job with the phase's other requests."""
        await self._recover()
        slot = (ticket.run, request_key(ticket.run, ticket.agent, body))
        future = self._live.get(slot)
        if future is None:
            stored = (await self.office.store.answers(slot[0], [slot[1]])).get(slot[1])
            if stored is not None:
                return int(stored["status"]), stored["response"]
            future = self._live.get(slot)  # another call of the same request got here meanwhile
            if future is None:
                future = self._live[slot] = _future()
                self._queue(slot, self.provider.line(slot[1], body))
        if slot in self._claimed:
            ticket.shared = True  # an identical request of another call: one answer, paid once
        self._claimed.add(slot)
        return await self._wait(slot, future)

    async def _wait(self, slot: tuple[str, str], future: asyncio.Future[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
        """The request's answer; meanwhile whoever hears (HEARS) is told what it waits on, each time
        that changes. A caller cancelled does not cancel the request: other calls may share it."""
        hears, said = HEARS.get(), None
        while hears is not None and not future.done():
            if (line := self.status(slot)) != said:
                hears(line)
                said = line
            await asyncio.wait([future], timeout=self.settings.poll)
        return await asyncio.shield(future)

    def status(self, slot: tuple[str, str]) -> str:
        """`waiting for batch job batch_abc (in_progress, 12 min): 1,204 of 2,000 requests done`."""
        job = self._job_of.get(slot)
        if job is None:
            return "gathering a batch job"
        if job.provider_id is None:
            return f"sending batch job {job.id} ({len(job.keys):,} requests)"
        age = _age(time.time() - job.since)
        return f"waiting for batch job {job.provider_id} ({job.state}, {age}): {job.done:,} of {len(job.keys):,} requests done"

    # --- gathering a phase into jobs -----------------------------------------------------------

    def _queue(self, slot: tuple[str, str], line: bytes) -> None:
        if self._pending and self._pending_bytes + len(line) > self.settings.max_bytes:
            self._send_pending()
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._first = loop.time()
        self._pending.append((slot, line))
        self._pending_bytes += len(line)
        if len(self._pending) >= self.settings.max_requests:
            self._send_pending()
            return
        # A phase is every call in flight at once: its requests arrive within moments of each other.
        # A job goes once none has come for `gather` seconds, and at the latest 10 x `gather` after
        # its first (lanes out of step could otherwise keep a trickle coming).
        if self._timer is not None:
            self._timer.cancel()
        at = min(loop.time() + self.settings.gather, self._first + 10 * self.settings.gather)
        self._timer = loop.call_at(at, self._send_pending)

    def _send_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        requests, self._pending, self._pending_bytes = self._pending, [], 0
        self.sending += 1
        self._spawn(self._send(requests))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, requests: list[tuple[tuple[str, str], bytes]]) -> None:
        """Store the job with its requests, then send it, then store the provider's id: a kill at any
        point leaves a job the next process finds (store.batches), sent once."""
        job = _Job(uuid.uuid4().hex, [slot for slot, _ in requests])
        self._job_of.update(dict.fromkeys(job.keys, job))
        data = b"".join(line for _, line in requests)
        try:
            try:
                await self.office.store.add_job({"id": job.id, **self.ident, "requests": len(requests), "bytes": len(data)}, job.keys)
                provider_id = await self._submit(job, data)
                await self.office.store.set_job(job.id, provider_id=provider_id, state="submitted")
                job.provider_id = provider_id
            finally:
                self.sending -= 1
        except Exception as exc:  # nothing was sent (or it cannot be told): every call hears why
            self._settle(job, {}, exc)
            return
        self.jobs[job.id] = job
        await self._watch(job, provider_id)

    async def _submit(self, job: _Job, data: bytes) -> str:
        """Send the job; a transient fault is retried with backoff, after looking whether the job
        reached the provider after all (a batch is never created twice)."""
        retry: RetryConfig = self.office.retry
        created = time.time()
        for attempt in range(retry.attempts):
            try:
                return await self.provider.submit(job.id, data)
            except Exception as exc:
                fault = classify(exc)
                if fault is None or attempt + 1 == retry.attempts:
                    await self.office.store.collect(job.id, "abandoned", {k: {"state": "lost", "reason": "refused"} for k in job.keys},
                                                    reason=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
                    raise
                await asyncio.sleep(backoff(retry, attempt, fault))
                found = await self.provider.find(job.id, created)
                if found is not None:
                    return found
        raise AssertionError("unreachable")

    # --- waiting and collecting ----------------------------------------------------------------

    async def _watch(self, job: _Job, provider_id: str) -> None:
        """Poll the job until it ends (backing off to 10x the first interval), then collect it. With
        `--detach`, a job still open stops the run instead, once every job of the phase is sent."""
        delay, failures = self.settings.poll, 0
        while True:
            try:
                polled = await self.provider.poll(provider_id)
                failures = 0
            except Exception as exc:
                fault = classify(exc)
                failures += 1
                if fault is None or failures >= self.office.retry.attempts:
                    self._settle(job, {}, exc)
                    return
                await asyncio.sleep(backoff(self.office.retry, failures - 1, fault))
                continue
            if polled.open:
                if (polled.state, polled.done) != (job.state, job.done):  # what `cads runs` shows of it
                    job.state, job.done = polled.state, polled.done
                    await self.office.store.set_job(job.id, state=polled.state, done=polled.done)
                if self.office.detach:
                    await self.office.quiet()
                    self._settle(job, {}, BatchDetached(f"{len(job.keys)} requests wait in batch job {provider_id}"))
                    return
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))
                delay = min(delay * 1.5, self.settings.poll * 10)
                continue
            await self._collect(job, polled)
            return

    async def _collect(self, job: _Job, polled: Polled) -> None:
        """Store every request's end in one transaction, then answer the calls waiting on them."""
        if polled.state == "failed":
            self._failures += 1
            why = polled.reason or "the provider failed the job"
            await self.office.store.collect(job.id, "failed", {k: {"state": "lost", "reason": "job_failed"} for k in job.keys}, reason=why)
            if self._failures >= self.settings.job_failures:
                endpoint = f"{self.ident['provider']} {self.ident['model']} at {self.ident['endpoint']}"
                error: Exception = BatchJobsFailing(f"{self._failures} batch jobs in a row to {endpoint} failed whole (last: {why})")
            else:
                error = LostInBatch(f"batch job failed whole: {why}")
            self._settle(job, {}, error)
            return
        self._failures = 0
        found = await self.provider.answers(polled)
        answers = {slot: found.get(slot[1], Answer(lost="missing")) for slot in job.keys}
        # An error answer (a 500 inside the job) is kept as such: asking again sends the request anew.
        rows = {
            slot: {"state": "lost", "status": None, "response": None, "reason": a.lost}
            if a.lost else {"state": "answered" if a.status == 200 else "errored", "status": a.status, "response": a.body, "reason": None}
            for slot, a in answers.items()
        }
        await self.office.store.collect(job.id, "collected", rows)
        self._settle(job, answers, None)

    def _settle(self, job: _Job, answers: dict[tuple[str, str], Answer], error: BaseException | None) -> None:
        self.jobs.pop(job.id, None)
        for slot in job.keys:
            if self._job_of.get(slot) is job:
                del self._job_of[slot]
            future = self._live.pop(slot, None)
            self._claimed.discard(slot)
            if future is None or future.done():
                continue
            answer = answers.get(slot)
            if error is not None:
                future.set_exception(error)
            elif answer is None or answer.lost:
                future.set_exception(LostInBatch(f"the batch job did not answer the request ({answer.lost if answer else 'missing'})"))
            else:
                future.set_result((answer.status or 500, answer.body or {}))

    # --- a resumed run ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Once per process, before any request: the jobs an earlier process left open are watched
        again (a job stored but maybe never sent is looked for at the provider), so their requests
        are waited for, not sent again."""
        if self._recovered is None:
            self._recovered = asyncio.ensure_future(self._reopen())
        await asyncio.shield(self._recovered)

    async def _reopen(self) -> None:
        for row in await self.office.store.open_jobs(**self.ident):
            provider_id = row["provider_id"] or await self.provider.find(row["id"], row["created_at"])
            if provider_id is None:  # killed before the provider had it: nothing was sent, nothing paid
                await self.office.store.collect(row["id"], "abandoned", {tuple(k): {"state": "lost", "reason": "never_sent"} for k in row["keys"]})
                continue
            if row["provider_id"] is None:
                await self.office.store.set_job(row["id"], provider_id=provider_id, state="submitted")
            job = _Job(row["id"], [tuple(k) for k in row["keys"]], row["done"], row["state"], provider_id, row["created_at"])  # type: ignore[misc]
            for slot in job.keys:
                self._live.setdefault(slot, _future())
                self._job_of[slot] = job
            self.jobs[job.id] = job
            self._spawn(self._watch(job, provider_id))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.provider.close()


_OFFICES: weakref.WeakSet[BatchOffice] = weakref.WeakSet()


def _age(seconds: float) -> str:
    """12 s, 4 min, 3.5 h: how long a job has been out."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def waiting() -> str | None:
    """What the batch jobs in flight in this process wait for, for the progress display."""
    lines = [line for office in list(_OFFICES) if (line := office.waiting())]
    return "; ".join(lines) or None


@dataclass(eq=False)
class BatchOffice:
    """The batch desks of one process and store: one per endpoint, model and key."""

    store: Any  # store.batches.BatchStore
    settings: BatchConfig = field(default_factory=BatchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    detach: bool = False
    desks: dict[tuple[str, ...], BatchDesk] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _OFFICES.add(self)

    def desk(self, agent: AgentConfig, settings: BatchConfig, retry: RetryConfig) -> BatchDesk:
        self.settings, self.retry = settings, retry  # a run's own: one run per process batches
        key = (agent.provider, agent.base_url or "", agent.model, agent.needs_key() or "")
        if key not in self.desks:
            self.desks[key] = BatchDesk(agent, self)
        return self.desks[key]

    async def quiet(self) -> None:
        """Until no desk has requests gathering or a job being sent."""
        while any(d._pending or d.sending for d in self.desks.values()):
            await asyncio.sleep(0.05)

    def waiting(self) -> str | None:
        """`waiting for 3 batch jobs: 1,204 of 2,000 requests done`, while jobs are in flight."""
        jobs = [job for desk in self.desks.values() for job in desk.jobs.values()]
        if not jobs:
            return None
        total = sum(len(job.keys) for job in jobs)
        done = sum(job.done for job in jobs)
        return f"waiting for {len(jobs)} batch job{'s' * (len(jobs) != 1)}: {done:,} of {total:,} requests done"

    async def close(self) -> None:
        _OFFICES.discard(self)  # closed, it waits for nothing, whenever the collector comes by
        for desk in self.desks.values():
            await desk.close()
