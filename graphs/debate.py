"""How the debate flows, one round at a time.

open_round -> problem (one per proposer and slot) -> consensus -> [human_review] -> discard | keep |
adversarial (one edge per problem, by its outcome) -> adversary -> open_round or END.

A problem goes through the round on its own: propose, paint, critique (one call per critic; with
the consistency gate, explicit image/question/reference checks, and a conflict is revised once and
checked again, then dropped), revise if the critics asked, the blind pass (the image necessity
gate: one judge without the image; a problem it solves is dropped), judge (one call per judge; an
adaptive jury asks in waves until the outcome is settled), score. It never waits for another
problem; only the adversary waits for the whole round, since it reads the round's pool. The
near-duplicate gate fingerprints the round's problems at the consensus barrier and removes
duplicates over the whole run when it stops (graphs.dedup).

Every model call is a LangGraph task (`@task`): its result is saved with the checkpoint as it
finishes, so a crash costs at most the calls in flight, and a resumed problem picks up after its
last finished call. A problem records what it made and the requests it took in the ledger in one
transaction when it is done; records are upserted on deterministic ids and each request has a key
(its call and attempt), so running a problem again cannot duplicate anything.

A call that gives up (its retries spent) never fails the round: a proposer's failure drops only its
problem, a critic's leaves no critique, a failed revision leaves the proposal as it was, a judge
abstains, a painter's failure leaves the proposal unpainted (review drops it), and the adversary's
keeps the context. Every request, failed or not, is logged with its fault and what followed.

A budget (`cads run --budget`) is checked where a round opens: if the last round's cost would take
the run past it, the run is marked stopped and the graph interrupts; `cads resume --budget` answers
the interrupt with the new budget. With `review: true` the round pauses again after its consensus
until a person decides its outcomes (graphs.review; `cads review` or Studio answers).
"""
from __future__ import annotations

import asyncio
import functools
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal, TypeVar, cast

from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.func import task
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Send, interrupt

from cadsynth.agents.calls import Attempt, EndpointUnreachable, ModelCallError, Reply
from cadsynth.agents.panel import Agent, CallFailed
from cadsynth.agents.painter.workers import render_async
from cadsynth import lifecycle
from cadsynth.config import RunConfig, load_config
from cadsynth.domain import (
    Consensus,
    Context,
    Critique,
    DropReason,
    Judgment,
    Proposal,
    RoundSummary,
    critique_id,
    judgment_id,
    proposal_id,
)
from cadsynth.graphs import consensus as rule
from cadsynth.graphs import dedup
from cadsynth.graphs.reliability import estimate as estimate_reliability, run_votes
from cadsynth.graphs.plan import initial_context, plan_proposal
from cadsynth.graphs.review import human_review
from cadsynth.graphs.settings import Resources, Settings, resources, validated
from cadsynth.graphs.state import DebateState, Task
from cadsynth.store.ledger import CallRecord, Ledger, lease_owner

T = TypeVar("T")


def _calls(agent: Agent, task: Task, role: str, target: str, attempts: tuple[Attempt, ...]) -> list[CallRecord]:
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
        )
        for i, a in enumerate(attempts)
    ]


async def _ask(
    res: Resources, agent: Agent, task: Task, role: str, target: str, call: Awaitable[Reply[T]]
) -> tuple[Reply[T] | None, list[CallRecord]]:
    """Make one call: the one way nodes ask. `target` is what the call is about within the run: a
    proposal's key (r0/gpt/1, with /revise and the like) or a round's (r0/context). Returns the
    reply (None when the call gave up and the node carries on without it) and a ledger row per
    request it took, for the node to write with its records in one transaction. An unreachable
    endpoint is logged here and raised: it stops the run.
    """
    try:
        reply = await call
    except (CallFailed, EndpointUnreachable) as failed:
        calls = _calls(agent, task, role, target, failed.attempts)
        if isinstance(failed, EndpointUnreachable):
            await res.ledger.write(calls=calls)
            raise
        return None, calls
    return reply, _calls(agent, task, role, target, reply.attempts)


def _task(state: DebateState, **extra: Any) -> Task:
    """A task's payload: its run and round and what it works on; the config it finds by the run."""
    return cast(Task, {"run": state["run"], "round": state["round"], **extra})


def _proposals(state: DebateState) -> list[Proposal]:
    return sorted((Proposal.model_validate(p) for p in state.get("proposals", {}).values()), key=lambda p: p.id)


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
    except ValueError:
        return proposal.model_copy(update={"image": None})
    return proposal.model_copy(update={"image": await asyncio.to_thread(res.blobs.put, png)})


# --- the run's status: a debate's is the graph's own ------------------------------------------
# Taking the run's lease marks it running (store.ledger); here it stops at its budget, finishes,
# or fails, whether the CLI drives it or Studio's server does.


N = TypeVar("N", bound=Callable[..., Awaitable[dict[str, Any]]])


def fails_the_run(node: N) -> N:
    """A node that raises marks its run failed, with the reason, before the error goes on: a run is
    never left `running` by a failure (an unreachable endpoint, a rejected key, a full disk)."""

    @functools.wraps(node)
    async def guarded(given: Any, runtime: Runtime[Settings]) -> dict[str, Any]:
        try:
            return await node(given, runtime)
        except GraphBubbleUp:
            raise  # an interrupt (the budget, a review), not a failure
        except Exception as exc:
            run = given.get("run") or get_config()["configurable"]["thread_id"]
            res = await resources(runtime.context)
            await lifecycle.failed(res.ledger, run, exc)
            raise

    return cast(N, guarded)


# --- round start -----------------------------------------------------------------------------


async def _hold_for_budget(res: Resources, run: str, round_: int) -> None:
    """Interrupt here while the next round could take the run past its budget (estimate: the last round)."""
    record = await res.ledger.run(run)
    budget = record["budget_usd"] if record else None
    while budget is not None:
        spent = (await res.ledger.call_totals(run))["usd"]
        estimate = await res.ledger.round_cost(run, round_ - 1)
        if spent + estimate <= budget:
            return
        await lifecycle.stopped_at_budget(res.ledger, run)
        answer = interrupt(
            {"reason": "budget", "round": round_, "budget_usd": budget, "spent_usd": spent, "next_round_usd": estimate}
        )
        if isinstance(answer, dict) and answer.get("budget_usd") is not None:
            budget = float(answer["budget_usd"])
        await lifecycle.resumed(res.ledger, run)


async def open_round(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = await resources(runtime.context)
    # Started from Studio with no input: the thread is the run, the built-in config its config.
    run = state.get("run") or get_config()["configurable"]["thread_id"]
    config = state.get("config") or load_config(None).model_dump(mode="json")
    round_ = state.get("round", 0)
    if round_ > 0:
        await _hold_for_budget(res, run, round_)  # before anything of the round is written
    context = Context.model_validate(state["context"]) if state.get("context") else initial_context()
    if round_ == 0:
        await lifecycle.begin(res.ledger, run, config, RunConfig.model_validate(config).seed)
    if await res.ledger.claim(run, lease_owner()):  # the CLI holds it already; Studio's server takes it here
        await lifecycle.resumed(res.ledger, run)
    await res.ledger.put_context(run, round_, context)
    res.remember_context(run, round_, context)
    # Only what is not in the state yet: every value returned here is stored again with the step.
    missing = {"run": run, "config": config, "round": round_, "context": context.model_dump(mode="json"), "kept": 0}
    return {key: value for key, value in missing.items() if key not in state} | {"done": False}


def to_problems(state: DebateState) -> list[Send] | Literal["consensus"]:
    """One problem per proposer and slot; each moves through the round on its own."""
    config = validated(state["config"])
    slots = [(agent.name, index) for agent in config.agents("proposer") for index in range(config.proposals_per_agent)]
    jury = rule.jury_order([j.name for j in config.agents("judge")], state.get("judges", {}))
    weights = {"weights": state.get("reliability", {})} if config.consensus.weighted else {}
    sends = [
        Send("problem", _task(state, agent=name, index=index, slot=slot, jury=jury, **weights))
        for slot, (name, index) in enumerate(slots)
    ]
    return sends or "consensus"


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
    reply, calls = await _ask(res, agent, job, "proposer", key, agent.propose(key, context, plan.seed, plan.strategy, plan.capabilities))
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
    reply, calls = await _ask(res, agent, job, "painter", proposal.key, agent.paint(proposal.visual_prompt))
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
    reply, calls = await _ask(res, agent, job, role, proposal.key + suffix, call)
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
    reply, calls = await _ask(res, agent, job, "blind_judge", proposal.key + "/blind", call)
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
    reply, calls = await _ask(res, agent, job, "proposer", f"{proposal.key}/revise", call)
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
    reply, calls = await _ask(res, agent, job, "judge", proposal.key, call)
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
    reply, calls = await _ask(res, agent, job, "rationalizer", f"{proposal.key}/rationalize", call)
    if reply is None:
        return _answer(None, calls)
    record = Judgment(
        **reply.value.model_dump(), id=f"{judgment_id(proposal.id, agent.name)}/rationalized", run=proposal.run,
        round=proposal.round, judge=agent.name, proposal=proposal.id, rationalized=True,
    )
    return _answer(record.model_copy(update={"agrees": rule.judge_agrees(record, proposal)}), calls)


# --- one problem, start to verdict -------------------------------------------------------------


def review_decision(proposal: Proposal, critiques: list[Critique]) -> Literal["keep", "revise", "drop"]:
    """A majority of drop verdicts drops a problem; any other objection sends it back for revision."""
    if proposal.image is None:
        return "drop"  # nothing to look at: the spec could not be painted
    verdicts = Counter(c.verdict for c in critiques)
    if verdicts["drop"] * 2 > len(critiques):
        return "drop"
    return "revise" if verdicts["revise"] or verdicts["drop"] else "keep"


Took = Callable[[dict[str, Any]], Any]


def _blind_judge_for(config: RunConfig, proposal: Proposal, slot: int) -> str:
    """Who takes the blind pass: the judges in turn by slot, never the problem's own proposer."""
    judges = [j.name for j in config.agents("judge") if j.name != proposal.proposer] or [j.name for j in config.agents("judge")]
    return judges[slot % len(judges)]


async def _critics(config: RunConfig, about: dict[str, Any], proposal: Proposal, took: Took, *, recheck: bool = False) -> list[Critique]:
    critics = [c for c in config.agents("critic") if c.name != proposal.proposer]
    ask = {**about, "proposal": proposal.model_dump(mode="json"), "consistency": config.gates.consistency, "recheck": recheck}
    reviews = await asyncio.gather(*(critique({**ask, "agent": c.name}) for c in critics))
    return [Critique.model_validate(made) for made in map(took, reviews) if made is not None]


async def _jury(config: RunConfig, job: Task, proposal: Proposal, took: Took) -> list[Judgment]:
    """Every judge at once (a full jury), or in the panel's order, each wave the fewest whose
    answers could settle the outcome, until it is settled (an adaptive one)."""
    judgments: list[Judgment] = []
    by_name = {j.name: j for j in config.agents("judge")}
    remaining = [by_name[name] for name in job.get("jury", by_name)]
    while remaining:
        wave = len(remaining)
        if config.jury == "adaptive":
            wave = rule.judges_to_ask(proposal, judgments, len(remaining), config.consensus)
        if wave == 0:
            break
        asked, remaining = remaining[:wave], remaining[wave:]
        answers = await asyncio.gather(*(judge({**job, "agent": j.name}) for j in asked))
        judgments += [Judgment.model_validate(took(a)) for a in answers]
    return judgments


async def problem(job: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    """One problem from proposal to verdict: propose, paint, critique (with the consistency checks
    when that gate is on), revise if the critics ask, the blind pass (image necessity gate), judge,
    score. It moves on as soon as its own last step is done, never waiting for another
    problem of the round.

    Every model call is a task whose result LangGraph keeps as it finishes, so a crash repeats only
    the calls in flight: re-run, the problem gets its finished calls' results back and carries on.
    What it made and every request it took are recorded in one transaction when it is done.
    """
    res = await resources(runtime.context)
    ledger = res.ledger
    config = (await res.panel_of(job["run"])).config
    calls: list[CallRecord] = []

    def took(answer: dict[str, Any]) -> Any:
        calls.extend(CallRecord(**c) for c in answer["calls"])
        return answer["made"]

    proposed = took(await propose(job))
    if proposed is None:
        await ledger.write(calls=calls)
        return {}  # the proposer's call gave up: no problem
    proposal = Proposal.model_validate(proposed)
    if proposal.image is None:
        proposal = Proposal.model_validate(took(await paint({**job, "proposal": proposal.model_dump(mode="json")})))
    about = {**job, "proposal": proposal.model_dump(mode="json")}
    dropped: DropReason | None = None if proposal.image is not None else "unpainted"
    critiques: list[Critique] = []
    if config.critique and dropped is None:
        critiques = await _critics(config, about, proposal, took)
    decision = review_decision(proposal, critiques)
    # The consistency gate: a conflict the critics name is never waved through to the judges.
    conflicted = config.gates.consistency and any(c.conflict for c in critiques)
    if decision == "keep" and conflicted:
        decision = "revise"
    if decision == "revise":
        revision = {**about, "critiques": [c.model_dump(mode="json") for c in critiques]}
        proposal = Proposal.model_validate(took(await revise(revision)))
        if conflicted:
            # One more look at the revised problem; a conflict any critic still sees drops it.
            rechecks = await _critics(config, about, proposal, took, recheck=True)
            critiques += rechecks
            if any(c.conflict for c in rechecks):
                dropped = "inconsistent"
    elif decision == "drop" and dropped is None:
        dropped = "critics"
    blind: Judgment | None = None
    if config.gates.image_necessity and dropped is None:
        # On the problem as the judges will see it: a revision may have changed its reference.
        ask = {**job, "proposal": proposal.model_dump(mode="json"), "agent": _blind_judge_for(config, proposal, job.get("slot", 0))}
        made = took(await blind_judge(ask))
        blind = Judgment.model_validate(made) if made is not None else None
        if blind is not None and blind.agrees:
            dropped = "text_answerable"  # MMEvol's elimination: it does not need its image
    judged: list[Judgment] = []
    if dropped is not None:
        verdict = Consensus(
            proposal=proposal.id, run=proposal.run, round=proposal.round, score=None, judges=0, outcome="dropped",
            reason=dropped, blind_answer=blind.answer if blind is not None else None,
        )
    else:
        judgments = await _jury(config, {**job, "proposal": proposal.model_dump(mode="json")}, proposal, took)
        unasked = [j.name for j in config.agents("judge") if j.name not in {x.judge for x in judgments}]
        verdict = rule.score(proposal, judgments, config.consensus, unasked, job.get("weights"))
        if blind is not None:
            verdict = verdict.model_copy(update={"blind_answer": blind.answer})
        judged = [j.model_copy(update={"agrees": rule.judge_agrees(j, proposal)}) for j in judgments]
    rationales: list[Judgment] = []
    if config.rationalize and verdict.outcome == "adversarial":
        missed = [j for j in judged if not j.agrees and not j.abstained]
        tries = [rationalize({**job, "agent": j.judge, "proposal": proposal.model_dump(mode="json"), "judgment": j.model_dump(mode="json")})
                 for j in missed]
        rationales = [Judgment.model_validate(made) for made in map(took, await asyncio.gather(*tries)) if made is not None]
    # Rationalized judgments go to the ledger only: they are training text, not answers the round weighs.
    await ledger.write(proposals=[proposal], critiques=critiques, judgments=judged + rationales, calls=calls)
    return {
        "proposals": {proposal.id: proposal.model_dump(mode="json")},
        "critiques": {c.id: c.model_dump(mode="json") for c in critiques},
        "judgments": {j.id: j.model_dump(mode="json") for j in judged},
        "consensus": {proposal.id: verdict.model_dump(mode="json")},
    }


async def consensus(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    """Every problem of the round has its verdict: the consensus edges route each. The round's
    judged problems are fingerprinted here for the near-duplicate gate (graphs.dedup)."""
    if validated(state["config"]).gates.near_duplicates.enabled:
        res = await resources(runtime.context)
        verdicts = {pid: Consensus.model_validate(c) for pid, c in state.get("consensus", {}).items()}
        await dedup.fingerprint_round(res.ledger, res.blobs, _proposals(state), verdicts)
    return {}


# The consensus edges: the node each verdict goes to. A problem the critics dropped is discarded.
OUTCOME_NODE = {"discard": "discard", "dropped": "discard", "keep": "keep", "adversarial": "adversarial"}
OUTCOME_NODES = ("discard", "keep", "adversarial")


def route_by_consensus(state: DebateState) -> list[Send] | Literal["adversary"]:
    """Each problem goes to the node for its outcome (as a reviewer decided it, under review)."""
    sends = [Send(OUTCOME_NODE[c["outcome"]], _task(state, consensus=c)) for _, c in sorted(state.get("consensus", {}).items())]
    return sends or "adversary"


def after_consensus(state: DebateState) -> list[Send] | Literal["human_review", "adversary"]:
    """A run under review waits for a person's decisions before any outcome is recorded."""
    if validated(state["config"]).review and state.get("consensus"):
        return "human_review"
    return route_by_consensus(state)


def record_outcome(node_name: str):  # type: ignore[no-untyped-def]
    async def node(job: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
        verdict = Consensus.model_validate(job["consensus"])
        assert OUTCOME_NODE[verdict.outcome] == node_name
        res = await resources(runtime.context)
        await res.ledger.put_consensus([verdict])
        return {}

    node.__name__ = node_name
    return node


# --- adversary ---------------------------------------------------------------------------------


def round_stats(proposals: list[Proposal], verdicts: dict[str, Consensus]) -> dict[str, Any]:
    """What split the panel this round, by capability and strategy (over judged problems)."""
    judged = [p for p in proposals if p.id in verdicts and verdicts[p.id].outcome != "dropped"]
    counts = rule.tally(verdicts[p.id].outcome for p in proposals if p.id in verdicts)
    n = max(1, len(judged))

    def split_rate(groups: dict[str, list[Proposal]]) -> dict[str, float]:
        return {k: sum(verdicts[p.id].outcome == "adversarial" for p in ps) / len(ps) for k, ps in groups.items()}

    by_capability: dict[str, list[Proposal]] = defaultdict(list)
    by_strategy: dict[str, list[Proposal]] = defaultdict(list)
    for p in judged:
        by_strategy[p.strategy].append(p)
        for c in p.capabilities:
            by_capability[c].append(p)
    unanimous = sum(1 for p in judged if verdicts[p.id].outcome == "keep" and verdicts[p.id].score == verdicts[p.id].judges)
    return {
        "proposals": len(proposals),
        **counts,
        "split_share": counts["adversarial"] / n,
        "unanimous_share": unanimous / n,
        "discard_share": counts["discarded_by_judges"] / n,
        "capability_splits": split_rate(by_capability),
        "strategy_splits": split_rate(by_strategy),
    }


def _pool(proposals: list[Proposal], verdicts: dict[str, Consensus], judgments: list[Judgment]) -> list[dict[str, Any]]:
    answers: dict[str, dict[str, str | None]] = defaultdict(dict)
    for j in judgments:
        answers[j.proposal][j.judge] = j.answer
    return [
        {
            "question": p.question,
            "reference_answer": p.reference_answer,
            "capabilities": list(p.capabilities),
            "strategy": p.strategy,
            "difficulty": p.difficulty,
            "agreeing": verdicts[p.id].score,
            "judges": verdicts[p.id].judges,
            "answers": answers[p.id],
        }
        for p in proposals
        if p.id in verdicts and verdicts[p.id].outcome == "adversarial"
    ]


async def adversary(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = await resources(runtime.context)
    config = validated(state["config"])
    run, round_ = state["run"], state["round"]
    proposals = _proposals(state)
    verdicts = {pid: Consensus.model_validate(c) for pid, c in state.get("consensus", {}).items()}
    stats = round_stats(proposals, verdicts)
    context = Context.model_validate(state["context"])
    await res.ledger.put_round(
        RoundSummary(
            run=run,
            round=round_,
            proposals=stats["proposals"],
            kept=stats["kept"],
            adversarial=stats["adversarial"],
            discarded=stats["discarded"],
            dropped=stats["dropped"],
            mean_difficulty=round(sum(p.difficulty for p in proposals) / max(1, len(proposals)), 4),
            context_version=context.version,
        )
    )
    kept = state.get("kept", 0) + stats["kept"]
    judgments = [Judgment.model_validate(j) for j in state.get("judgments", {}).values()]
    judges = rule.judge_record(state.get("judges", {}), judgments)
    reliability = {}
    if config.consensus.weighted:  # the next round's weights: every closed round of this lane
        estimate = estimate_reliability(run_votes(await res.ledger.proposals(run), await res.ledger.judgments(run)))
        reliability = {"reliability": {name: r.estimated_accuracy for name, r in estimate.items()}}
    done = round_ + 1 >= config.rounds or kept >= config.target
    # The round's records are in the ledger: the state between rounds carries none of them, so
    # the checkpoints kept at round boundaries stay small.
    cleared = {"proposals": None, "critiques": None, "judgments": None, "consensus": None}
    if done:
        await lifecycle.finished(res.ledger, run, kept)
        if config.lane is None:  # a lane's run settles its duplicates over all lanes (cadsynth.runner)
            await dedup.settle(res.ledger, run)
        return {"kept": kept, "done": True, **cleared}
    if config.adversary:
        agent = (await res.panel_of(run)).by_role("adversary")[0]
        pool = _pool(proposals, verdicts, judgments)
        call = agent.reflect(context, stats, pool)
        reply, calls = await _ask(res, agent, _task(state), "adversary", f"r{round_}/context", call)
        await res.ledger.write(calls=calls)
        if reply is None:
            # The context stays as it was; a new version keeps one context row per round.
            context = context.model_copy(
                update={"version": context.version + 1, "reflection": "(the adversary's call gave up; context kept)"}
            )
        else:
            context = reply.value
    return {
        "round": round_ + 1, "context": context.model_dump(mode="json"), "kept": kept, "judges": judges, "done": False,
        **reliability, **cleared,
    }


def next_round(state: DebateState) -> str:
    return END if state.get("done") else "open_round"


def build_graph() -> StateGraph[DebateState, Settings, DebateState, DebateState]:
    builder = StateGraph(DebateState, context_schema=Settings)
    builder.add_node("open_round", fails_the_run(open_round))
    builder.add_node("problem", fails_the_run(problem))  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("consensus", fails_the_run(consensus))
    builder.add_node("human_review", fails_the_run(human_review))
    for outcome in OUTCOME_NODES:
        builder.add_node(outcome, fails_the_run(record_outcome(outcome)))  # a Send target too
    builder.add_node("adversary", fails_the_run(adversary))

    builder.add_edge(START, "open_round")
    builder.add_conditional_edges("open_round", to_problems, ["problem", "consensus"])
    builder.add_edge("problem", "consensus")  # the round's one barrier: the adversary reads all of it
    builder.add_conditional_edges("consensus", after_consensus, [*OUTCOME_NODES, "human_review", "adversary"])
    builder.add_conditional_edges("human_review", route_by_consensus, [*OUTCOME_NODES, "adversary"])
    for outcome in OUTCOME_NODES:
        builder.add_edge(outcome, "adversary")
    builder.add_conditional_edges("adversary", next_round, ["open_round", END])
    return builder


# For LangGraph Studio / `langgraph dev`: compiled without a checkpointer (the server brings one).
graph = build_graph().compile()
