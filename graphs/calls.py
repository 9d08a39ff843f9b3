"""The model calls of a round: each a LangGraph task (`@task`), its result kept with the checkpoint.

Every call goes through `ask`, the one way the graph asks a model: it returns the reply (None
when the call gave up and the problem carries on without it) and a ledger row per request it
took. A task returns what it made and those rows; its problem records them in one transaction.
A call refused because the run is stopping drains the graph (LangGraph's GraphDrained): the
other calls in flight finish, and the run ends where it stands, to be resumed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from langgraph.config import get_stream_writer
from langgraph.errors import GraphDrained
from langgraph.func import task
from langgraph.runtime import get_runtime

from cadsynth.agents.batch import for_run
from cadsynth.agents.calls import Attempt, CallRefused, EndpointUnreachable, Reply
from cadsynth.agents.panel import Agent, CallFailed
from cadsynth.agents.painter.workers import render_async
from cadsynth.config import RunConfig
from cadsynth.domain import (
    Critique,
    Judgment,
    Proposal,
    critique_id,
    judgment_id,
    proposal_id,
)
from cadsynth.graphs import consensus as rule
from cadsynth.graphs.plan import plan_proposal
from cadsynth.graphs.settings import Resources, Settings, resources
from cadsynth.graphs.state import Task
from cadsynth.store.ledger import CallRecord


T = TypeVar("T")
log = logging.getLogger(__name__)


def call_records(agent: Agent, task: Task, role: str, target: str, attempts: tuple[Attempt, ...]) -> list[CallRecord]:
    """One ledger row per request the call took (or one for a cache hit)."""
    return [
        CallRecord(
            run=task["run"],
            round=task["round"],
            agent=agent.name,
            role=role,
            target=target,
            provider=agent.config.provider,
            model=agent.config.model,
            input_tokens=a.usage.input_tokens,
            output_tokens=a.usage.output_tokens,
            cost_usd=a.cost_usd,
            cached=a.cached,
            fault=a.fault,
            outcome=a.outcome,
            attempt=i,
            detail=a.detail,
            batch=a.batch,
            online_cost_usd=a.online_cost_usd,
        )
        for i, a in enumerate(attempts)
    ]


async def ask(
    res: Resources, agent: Agent, task: Task, role: str, target: str, call: Awaitable[Reply[T]]
) -> tuple[Reply[T] | None, list[CallRecord]]:
    """Make one call: the one way nodes ask. `target` is what the call is about within the run: a
    proposal's key (r0/gpt/1, with /revise and the like) or a round's (r0/context). Returns the
    reply (None when the call gave up and the node carries on without it) and a ledger row per
    request it took, for the node to write with its records in one transaction. An unreachable
    endpoint is logged here and raised: it stops the run. A call refused because the run is
    stopping raises GraphDrained: not a failure, and LangGraph lets the other calls in flight finish.
    """
    try:
        # A batched request is kept under its run (agents.batch); while it waits in a batch job, the
        # node's custom stream says on what (Studio shows it: a state, not a hang).
        with for_run(task["run"], hears=_stream(task, target)):
            reply = await call
    except CallRefused as refused:
        raise GraphDrained("stopping") from refused
    except (CallFailed, EndpointUnreachable) as failed:
        calls = call_records(agent, task, role, target, failed.attempts)
        if isinstance(failed, EndpointUnreachable):
            await res.ledger.write(calls=calls)
            raise
        return None, calls
    return reply, call_records(agent, task, role, target, reply.attempts)


def _stream(task: Task, target: str) -> Callable[[str], None]:
    """Write a line about the call to the node's custom stream (`stream_mode="custom"`)."""
    write = get_stream_writer()
    return lambda line: write({"batch": {"run": task["run"], "round": task["round"], "call": target, "waiting": line}})


async def _image(res: Resources, proposal: Proposal) -> bytes | None:
    if not proposal.image:
        return None
    return res.blobs.recent(proposal.image) or await asyncio.to_thread(res.blobs.get, proposal.image)


async def _paint(res: Resources, proposal: Proposal) -> Proposal:
    """Render the proposal's declarative spec into the blob store; a bad spec leaves it unpainted."""
    if proposal.image_spec is None:
        return proposal
    try:
        png = await render_async(proposal.image_spec)
    except ValueError as refused:  # a SpecError, or a limit an untrusted document broke (RenderRefused)
        why = str(refused)[:500]
        log.warning("%s left unpainted (%s): %s", proposal.key, proposal.image_spec.kind, why)
        return proposal.model_copy(update={"image": None, "paint_refused": why})
    return proposal.model_copy(update={"image": await asyncio.to_thread(res.blobs.put, png), "paint_refused": None})


# --- the model calls: each a LangGraph task, its result kept with the checkpoint --------------
# A task returns what it made and the requests it took; its problem records them in the ledger.


async def _res() -> Resources:
    return await resources(get_runtime(Settings).context)


async def _asked(job: Task) -> tuple[Resources, Agent, Proposal]:
    """What a call about a problem starts from: the resources, the agent asked and the problem."""
    res = await _res()
    return res, (await res.panel_of(job["run"]))[job["agent"]], Proposal.model_validate(job["proposal"])


def model_call(func: Callable[[Task], Awaitable[dict[str, Any]]]) -> Any:
    """`@task`, findable by LangGraph's runnable cache. LangGraph builds a task's runnable (and
    inspects its signature) on every call unless it finds the function in its module by
    qualified name; under `@task` that name holds the wrapper, whose `.func` is the function."""
    func.__qualname__ = f"{func.__qualname__}.func"
    return task(func)


def _answer(made: Proposal | Critique | Judgment | None, calls: list[CallRecord]) -> dict[str, Any]:
    return {"made": made.model_dump(mode="json") if made is not None else None, "calls": [asdict(c) for c in calls]}


@model_call
async def propose(job: Task) -> dict[str, Any]:
    """The proposer writes a problem (none when its call gave up)."""
    res = await _res()
    panel = await res.panel_of(job["run"])
    agent = panel[job["agent"]]
    context = await res.round_context(job["run"], job["round"])
    key = f"r{job['round']}/{agent.name}/{job['index']}"
    plan = await plan_proposal(panel.config, context, key, with_image=agent.config.sees_seed_images)
    pid = proposal_id(job["run"], job["round"], agent.name, job["index"])
    reply, calls = await ask(res, agent, job, "proposer", key, agent.propose(key, context, plan.seed, plan.strategy, plan.capabilities))
    if reply is None:
        return _answer(None, calls)
    proposal = Proposal.model_validate(
        {
            **reply.value.model_dump(mode="json"),
            "id": pid,
            "run": job["run"],
            "round": job["round"],
            "proposer": agent.name,
            "index": job["index"],
            "seed_id": plan.seed.id,
        }
    )
    return _answer(proposal, calls)


def _needs_painter(config: RunConfig, proposal: Proposal) -> bool:
    return proposal.image is None and (config.paint == "model" or proposal.image_spec is None)


@model_call
async def paint(job: Task) -> dict[str, Any]:
    """The proposal with its image: rendered from its spec, or drawn by a painter model (the
    painters take the round's slots in turn). Left unpainted when neither can: review drops it."""
    res = await _res()
    panel = await res.panel_of(job["run"])
    proposal = Proposal.model_validate(job["proposal"])
    if not _needs_painter(panel.config, proposal):
        return _answer(await _paint(res, proposal), [])
    painters = panel.config.agents("painter")
    if not painters:
        return _answer(proposal, [])
    agent = panel[painters[job.get("slot", 0) % len(painters)].name]
    reply, calls = await ask(res, agent, job, "painter", proposal.key, agent.paint(proposal.visual_prompt))
    return _answer(proposal if reply is None else proposal.model_copy(update={"image": reply.value}), calls)


@model_call
async def critique(job: Task) -> dict[str, Any]:
    """One critic's review of the problem (none when its call gave up). With the consistency gate
    it answers the explicit checks too; a recheck is the gate's second look after a revision."""
    res, agent, proposal = await _asked(job)
    consistency, recheck = job.get("consistency", False), job.get("recheck", False)
    suffix = "/recheck" if recheck else ""
    call = agent.critique(proposal, await _image(res, proposal), consistency=consistency)
    role = "recheck" if recheck else "critic"  # the cads_calls role column holds 16 characters
    reply, calls = await ask(res, agent, job, role, proposal.key + suffix, call)
    if reply is None:
        return _answer(None, calls)
    record = Critique(
        **reply.value.model_dump(),
        id=critique_id(proposal.id, agent.name) + suffix, run=proposal.run, round=proposal.round, critic=agent.name,
        proposal=proposal.id, recheck=recheck,
    )
    return _answer(record, calls)


@model_call
async def blind_judge(job: Task) -> dict[str, Any]:
    """The image necessity gate's one call: a judge answers the question without its image (none
    when the call gave up: the problem then goes on, as the gate could not look)."""
    res, agent, proposal = await _asked(job)
    call = agent.blind_judge(proposal)
    reply, calls = await ask(res, agent, job, "blind_judge", proposal.key + "/blind", call)
    if reply is None:
        return _answer(None, calls)
    record = Judgment(
        **reply.value.model_dump(), id=judgment_id(proposal.id, agent.name) + "/blind", run=proposal.run,
        round=proposal.round, judge=agent.name, proposal=proposal.id,
    )
    return _answer(record.model_copy(update={"agrees": rule.judge_agrees(record, proposal)}), calls)


@model_call
async def revise(job: Task) -> dict[str, Any]:
    """The proposer answers its critics: the revised problem, or the same one when the call gave up."""
    res = await _res()
    panel = await res.panel_of(job["run"])
    agent = panel[job["agent"]]
    proposal = Proposal.model_validate(job["proposal"])
    critiques = [Critique.model_validate(c) for c in job["critiques"]]
    call = agent.revise(proposal, critiques, await _image(res, proposal))
    reply, calls = await ask(res, agent, job, "proposer", f"{proposal.key}/revise", call)
    if reply is None:
        return _answer(proposal, calls)
    first = proposal.proposed_reference or proposal.reference_answer
    revised = proposal.model_copy(update={
        **dict(reply.value), "revision": proposal.revision + 1,
        "proposed_reference": first if first != reply.value.reference_answer else None,
    })
    revised = Proposal.model_validate(revised.model_dump())  # re-check the reviser's fields
    if revised.image_spec != proposal.image_spec and not _needs_painter(panel.config, proposal.model_copy(update={"image": None})):
        revised = await _paint(res, revised.model_copy(update={"image": None}))
        if revised.image is None:
            revised = proposal  # the revised spec cannot be drawn: keep the problem as it was
    # A painter model's image is not redrawn on revision: that would be a second call in this task.
    return _answer(revised, calls)


@model_call
async def judge(job: Task) -> dict[str, Any]:
    """One judge answers the problem blind; a judge whose call gave up abstains."""
    res, agent, proposal = await _asked(job)
    call = agent.judge(proposal, await _image(res, proposal))
    reply, calls = await ask(res, agent, job, "judge", proposal.key, call)
    answer = reply.value.model_dump() if reply is not None else {"answer": None, "abstained": True}
    # An abstention is recorded too: consensus counts only judges that answered (K shrinks).
    record = Judgment(
        **answer, id=judgment_id(proposal.id, agent.name), run=proposal.run, round=proposal.round, judge=agent.name,
        proposal=proposal.id,
    )
    return _answer(record, calls)


@model_call
async def rationalize(job: Task) -> dict[str, Any]:
    """A judge that missed a split problem writes reasoning that reaches the reference (STaR's
    rationalization): a training rationale, marked as such, never a vote."""
    res, agent, proposal = await _asked(job)
    earlier = job["judgment"]["answer"]
    call = agent.rationalize(proposal, earlier, await _image(res, proposal))
    reply, calls = await ask(res, agent, job, "rationalizer", f"{proposal.key}/rationalize", call)
    if reply is None:
        return _answer(None, calls)
    record = Judgment(
        **reply.value.model_dump(), id=f"{judgment_id(proposal.id, agent.name)}/rationalized", run=proposal.run,
        round=proposal.round, judge=agent.name, proposal=proposal.id, rationalized=True,
    )
    return _answer(record.model_copy(update={"agrees": rule.judge_agrees(record, proposal)}), calls)
