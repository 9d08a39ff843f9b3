"""How the debate flows, one round at a time.

open_round -> propose (one task per proposer and slot) -> paint (declarative specs) -> paint_model
(one task per proposal a painter model draws) -> painted -> critique (one task per critic and
proposal) -> review -> revise (one task per proposal the critics flagged) -> judging -> judge
(one task per judge and proposal; an adaptive jury asks in waves, back through judging, until each
outcome is settled) -> consensus -> discard | keep | adversarial (one edge per problem, by its
consensus score) -> adversary -> open_round or END.

Every model call is its own task, so a crash costs at most the calls in flight: LangGraph keeps
the writes of the tasks that finished. Each task also records what it produced in the ledger,
with upserts on deterministic ids, so re-running it cannot duplicate anything.

A call that gives up (its retries spent) never fails the round: a proposer's failure drops only its
proposal, a critic's leaves no critique, a failed revision leaves the proposal as it was, a judge
abstains, a painter's failure leaves the proposal unpainted (review drops it), and the adversary's
keeps the context. Every request, failed or not, is logged with its fault and what followed.

A budget (`cads run --budget`) is checked where a round opens: if the last round's cost would take
the run past it, the run is marked stopped and the graph interrupts; `cads resume --budget` answers
the interrupt with the new budget.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar, cast

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt

from cadsynth.agents.calls import Attempt, EndpointUnreachable, Reply
from cadsynth.agents.panel import Agent, CallFailed
from cadsynth.agents.painter.render import render
from cadsynth.config import RunConfig, load_config
from cadsynth.domain import (
    Consensus,
    Context,
    Critique,
    Judgment,
    Proposal,
    RoundSummary,
    critique_id,
    judgment_id,
    proposal_id,
)
from cadsynth.graphs import consensus as rule
from cadsynth.graphs.plan import initial_context, plan_proposal
from cadsynth.graphs.settings import Resources, Settings, resources, validated
from cadsynth.graphs.state import DebateState, Task
from cadsynth.store.ledger import CallRecord, lease_owner

OUTCOME_NODES = ("discard", "keep", "adversarial")
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
        )
        for a in attempts
    ]


async def _ask(
    res: Resources, agent: Agent, task: Task, role: str, target: str, call: Awaitable[Reply[T]]
) -> tuple[Reply[T] | None, list[CallRecord]]:
    """Make one call: the one way nodes ask. Returns the reply (None when the call gave up and the
    node carries on without it) and a ledger row per request it took, for the node to write with
    its records in one transaction. An unreachable endpoint is logged here and raised: it stops
    the run.
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


def _dropped(state: DebateState) -> set[str]:
    return {pid for pid, c in state.get("consensus", {}).items() if c["outcome"] == "dropped"}


async def _image(res: Resources, proposal: Proposal) -> bytes | None:
    return await asyncio.to_thread(res.blobs.get, proposal.image) if proposal.image else None


async def _paint(res: Resources, proposal: Proposal) -> Proposal:
    """Render the proposal's declarative spec into the blob store; a bad spec leaves it unpainted."""
    if proposal.image_spec is None:
        return proposal
    try:
        png = await asyncio.to_thread(render, proposal.image_spec)
    except ValueError:
        return proposal.model_copy(update={"image": None})
    return proposal.model_copy(update={"image": await asyncio.to_thread(res.blobs.put, png)})


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
        await res.ledger.set_status(run, "stopped")
        answer = interrupt(
            {"reason": "budget", "round": round_, "budget_usd": budget, "spent_usd": spent, "next_round_usd": estimate}
        )
        if isinstance(answer, dict) and answer.get("budget_usd") is not None:
            budget = float(answer["budget_usd"])
        await res.ledger.set_status(run, "running")


async def open_round(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    # Started from Studio with no input: the thread is the run, the simulated panel the config.
    run = state.get("run") or get_config()["configurable"]["thread_id"]
    config = state.get("config") or load_config(None).model_dump(mode="json")
    round_ = state.get("round", 0)
    if round_ > 0:
        await _hold_for_budget(res, run, round_)  # before anything of the round is written
    context = Context.model_validate(state["context"]) if state.get("context") else initial_context()
    if round_ == 0:
        await res.ledger.start_run(run, config, RunConfig.model_validate(config).seed)
    await res.ledger.claim(run, lease_owner())  # the CLI holds it already; Studio's server takes it here
    await res.ledger.put_context(run, round_, context)
    # Only what is not in the state yet: every value returned here is stored again with the step.
    missing = {"run": run, "config": config, "round": round_, "context": context.model_dump(mode="json"), "kept": 0}
    return {key: value for key, value in missing.items() if key not in state} | {"done": False}


def to_proposers(state: DebateState) -> list[Send]:
    config = validated(state["config"])
    return [
        Send("propose", _task(state, agent=agent.name, index=index))
        for agent in config.agents("proposer")
        for index in range(config.proposals_per_agent)
    ]


async def propose(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    panel = await res.panel_of(task["run"])
    agent = panel[task["agent"]]
    context = await res.round_context(task["run"], task["round"])
    key = f"r{task['round']}/{agent.name}/{task['index']}"
    # A simulated agent standing in for a real one (dry runs) is shown the seed image it would be.
    with_image = agent.config.provider != "sim" or agent.config.stand_in_for is not None
    plan = plan_proposal(panel.config, context, key, with_image=with_image)
    pid = proposal_id(task["run"], task["round"], agent.name, task["index"])
    reply, calls = await _ask(res, agent, task, "proposer", pid, agent.propose(key, context, plan.seed, plan.strategy, plan.capabilities))
    if reply is None:
        await res.ledger.write(calls=calls)
        return {}
    proposal = Proposal.model_validate(
        {
            **reply.value.model_dump(mode="json"),
            "id": pid,
            "run": task["run"],
            "round": task["round"],
            "proposer": agent.name,
            "index": task["index"],
            "seed_id": plan.seed.id,
        }
    )
    await res.ledger.write(proposals=[proposal], calls=calls)
    return {"proposals": {pid: proposal.model_dump(mode="json")}}


def _needs_painter(config: RunConfig, proposal: Proposal) -> bool:
    return proposal.image is None and (config.paint == "model" or proposal.image_spec is None)


async def paint(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    """Render the declarative specs; proposals a painter model draws are left to `paint_model`."""
    res = resources(runtime.context)
    config = validated(state["config"])
    todo = [p for p in _proposals(state) if p.image is None and not _needs_painter(config, p)]
    painted = await asyncio.gather(*(_paint(res, p) for p in todo))
    await res.ledger.put_proposals(painted)
    return {"proposals": {p.id: p.model_dump(mode="json") for p in painted}}


def to_painters(state: DebateState) -> list[Send] | Literal["painted"]:
    config = validated(state["config"])
    painters = config.agents("painter")
    if not painters:
        return "painted"  # nothing can draw a proposal without a spec: review drops it
    sends = [
        # Spread proposals over the painters by their place in the round, not by scheduling.
        Send("paint_model", _task(state, agent=painters[i % len(painters)].name, proposal=p.model_dump(mode="json")))
        for i, p in enumerate(q for q in _proposals(state) if _needs_painter(config, q))
    ]
    return sends or "painted"


async def paint_model(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    agent = (await res.panel_of(task["run"]))[task["agent"]]
    proposal = Proposal.model_validate(task["proposal"])
    reply, calls = await _ask(res, agent, task, "painter", proposal.id, agent.paint(proposal.visual_prompt))
    if reply is None:
        await res.ledger.write(calls=calls)
        return {}  # unpainted: review drops it
    painted = proposal.model_copy(update={"image": reply.value})
    await res.ledger.write(proposals=[painted], calls=calls)
    return {"proposals": {painted.id: painted.model_dump(mode="json")}}


async def painted(state: DebateState) -> dict[str, Any]:
    return {}  # a barrier: every image is in before any critic looks


# --- critique and revision --------------------------------------------------------------------


def to_critics(state: DebateState) -> list[Send] | Literal["review"]:
    config = validated(state["config"])
    if not config.critique:
        return "review"
    sends = [
        Send("critique", _task(state, agent=critic.name, proposal=p.model_dump(mode="json")))
        for p in _proposals(state)
        if p.image is not None
        for critic in config.agents("critic")
        if critic.name != p.proposer
    ]
    return sends or "review"


async def critique(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    agent = (await res.panel_of(task["run"]))[task["agent"]]
    proposal = Proposal.model_validate(task["proposal"])
    cid = critique_id(proposal.id, agent.name)
    call = agent.critique(critique_id(proposal.key, agent.name), proposal, await _image(res, proposal))
    reply, calls = await _ask(res, agent, task, "critic", proposal.id, call)
    if reply is None:
        await res.ledger.write(calls=calls)
        return {}  # no critique from this critic
    record = Critique(
        **reply.value.model_dump(), id=cid, run=proposal.run, round=proposal.round, critic=agent.name, proposal=proposal.id
    )
    await res.ledger.write(critiques=[record], calls=calls)
    return {"critiques": {cid: record.model_dump(mode="json")}}


R = TypeVar("R", Critique, Judgment)


def _by_proposal(records: dict[str, Any] | None, model: type[R]) -> dict[str, list[R]]:
    """The round's critiques or judgments in the state, grouped by the proposal they are about."""
    grouped: dict[str, list[R]] = defaultdict(list)
    for raw in (records or {}).values():
        record = model.model_validate(raw)
        grouped[record.proposal].append(record)
    return grouped


def _critiques_of(state: DebateState) -> dict[str, list[Critique]]:
    return _by_proposal(state.get("critiques"), Critique)


def review_decision(proposal: Proposal, critiques: list[Critique]) -> Literal["keep", "revise", "drop"]:
    """A majority of drop verdicts drops a problem; any other objection sends it back for revision."""
    if proposal.image is None:
        return "drop"  # nothing to look at: the spec could not be painted
    verdicts = Counter(c.verdict for c in critiques)
    if verdicts["drop"] * 2 > len(critiques):
        return "drop"
    return "revise" if verdicts["revise"] or verdicts["drop"] else "keep"


async def review(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    critiques = _critiques_of(state)
    dropped = [
        Consensus(proposal=p.id, run=p.run, round=p.round, score=None, judges=0, outcome="dropped")
        for p in _proposals(state)
        if review_decision(p, critiques[p.id]) == "drop"
    ]
    await resources(runtime.context).ledger.put_consensus(dropped)
    return {"consensus": {c.proposal: c.model_dump(mode="json") for c in dropped}}


def to_revisions(state: DebateState) -> list[Send] | Literal["judging"]:
    critiques = _critiques_of(state)
    sends = [
        Send(
            "revise",
            _task(
                state,
                agent=p.proposer,
                proposal=p.model_dump(mode="json"),
                critiques=[c.model_dump(mode="json") for c in critiques[p.id]],
            ),
        )
        for p in _proposals(state)
        if review_decision(p, critiques[p.id]) == "revise"
    ]
    return sends or "judging"


async def revise(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    agent = (await res.panel_of(task["run"]))[task["agent"]]
    proposal = Proposal.model_validate(task["proposal"])
    critiques = [Critique.model_validate(c) for c in task["critiques"]]
    target = f"{proposal.id}/revise"
    call = agent.revise(f"{proposal.key}/revise", proposal, critiques, await _image(res, proposal))
    reply, calls = await _ask(res, agent, task, "proposer", target, call)
    if reply is None:
        await res.ledger.write(calls=calls)
        return {}  # the proposal goes to the judges as it was
    revised = proposal.model_copy(
        update={**dict(reply.value), "sim": getattr(reply.value, "sim", proposal.sim), "revision": proposal.revision + 1}
    )
    revised = Proposal.model_validate(revised.model_dump())  # re-check the reviser's fields
    config = (await res.panel_of(task["run"])).config
    if revised.image_spec != proposal.image_spec and not _needs_painter(config, proposal.model_copy(update={"image": None})):
        revised = await _paint(res, revised.model_copy(update={"image": None}))
        if revised.image is None:
            revised = proposal  # the revised spec cannot be drawn: keep the problem as it was
    # A painter model's image is not redrawn on revision: that would be a second call in this task.
    await res.ledger.write(proposals=[revised], calls=calls)
    return {"proposals": {revised.id: revised.model_dump(mode="json")}}


# --- judgment --------------------------------------------------------------------------------


async def judging(state: DebateState) -> dict[str, Any]:
    return {}  # a barrier: every revision lands before any judge looks, every answer before the next wave


def _judgments_of(state: DebateState) -> dict[str, list[Judgment]]:
    return _by_proposal(state.get("judgments"), Judgment)


def to_judges(state: DebateState) -> list[Send] | Literal["consensus"]:
    """The next wave of judges, every problem at once; "consensus" once none is left to ask.

    A full jury asks every judge in the first wave. An adaptive one asks them in the panel's order,
    each wave the fewest whose answers could settle the outcome, and stops when it is settled.
    """
    config = validated(state["config"])
    dropped = _dropped(state)
    judged = _judgments_of(state)
    sends = []
    for p in _proposals(state):
        if p.id in dropped or p.image is None:
            continue
        asked = {j.judge for j in judged[p.id]}
        remaining = [judge for judge in config.agents("judge") if judge.name not in asked]
        wave = len(remaining)
        if config.jury == "adaptive":
            wave = rule.judges_to_ask(p, judged[p.id], len(remaining), config.consensus)
        sends += [Send("judge", _task(state, agent=j.name, proposal=p.model_dump(mode="json"))) for j in remaining[:wave]]
    return sends or "consensus"


async def judge(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = resources(runtime.context)
    agent = (await res.panel_of(task["run"]))[task["agent"]]
    proposal = Proposal.model_validate(task["proposal"])
    jid = judgment_id(proposal.id, agent.name)
    call = agent.judge(judgment_id(proposal.key, agent.name), proposal, await _image(res, proposal))
    reply, calls = await _ask(res, agent, task, "judge", proposal.id, call)
    if reply is None:
        # The judge abstains: consensus counts only judges that answered (K shrinks).
        record = Judgment(
            id=jid, run=proposal.run, round=proposal.round, judge=agent.name, proposal=proposal.id, answer=None, abstained=True
        )
    else:
        record = Judgment(
            **reply.value.model_dump(), id=jid, run=proposal.run, round=proposal.round, judge=agent.name, proposal=proposal.id
        )
    await res.ledger.write(judgments=[record], calls=calls)
    return {"judgments": {jid: record.model_dump(mode="json")}}


async def consensus(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    config = validated(state["config"])
    by_proposal = _judgments_of(state)
    dropped = _dropped(state)
    jury = [judge.name for judge in config.agents("judge")]
    scores, judged = {}, []
    for proposal in _proposals(state):
        if proposal.id in dropped:
            continue
        judgments = by_proposal[proposal.id]
        unasked = [name for name in jury if name not in {j.judge for j in judgments}]
        scores[proposal.id] = rule.score(proposal, judgments, config.consensus, unasked).model_dump(mode="json")
        judged += [j.model_copy(update={"agrees": rule.judge_agrees(j, proposal)}) for j in judgments]
    await resources(runtime.context).ledger.put_judgments(judged)
    return {"consensus": scores, "judgments": {j.id: j.model_dump(mode="json") for j in judged}}


def route_by_consensus(state: DebateState) -> list[Send] | Literal["adversary"]:
    """The consensus edges: each judged problem goes to the node for its outcome."""
    sends = [
        Send(c["outcome"], _task(state, consensus=c))
        for _, c in sorted(state.get("consensus", {}).items())
        if c["outcome"] in OUTCOME_NODES
    ]
    return sends or "adversary"


def record_outcome(outcome: str):  # type: ignore[no-untyped-def]
    async def node(task: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
        verdict = Consensus.model_validate(task["consensus"])
        assert verdict.outcome == outcome
        await resources(runtime.context).ledger.put_consensus([verdict])
        return {}

    node.__name__ = outcome
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
        "discard_share": (counts["discarded"] - counts["dropped"]) / n,
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
    res = resources(runtime.context)
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
    done = round_ + 1 >= config.rounds or kept >= config.target
    # The round's records are in the ledger: the state between rounds carries none of them, so
    # the checkpoints kept at round boundaries stay small.
    cleared = {"proposals": None, "critiques": None, "judgments": None, "consensus": None}
    if done:
        await res.ledger.set_status(run, "done")
        return {"kept": kept, "done": True, **cleared}
    if config.adversary:
        agent = (await res.panel_of(run)).by_role("adversary")[0]
        judgments = [Judgment.model_validate(j) for j in state.get("judgments", {}).values()]
        pool = _pool(proposals, verdicts, judgments)
        call = agent.reflect(f"r{round_}/reflect", context, stats, pool)
        reply, calls = await _ask(res, agent, _task(state), "adversary", f"r{round_}/context", call)
        await res.ledger.write(calls=calls)
        if reply is None:
            # The context stays as it was; a new version keeps one context row per round.
            context = context.model_copy(
                update={"version": context.version + 1, "reflection": "(the adversary's call gave up; context kept)"}
            )
        else:
            context = reply.value
    return {"round": round_ + 1, "context": context.model_dump(mode="json"), "kept": kept, "done": False, **cleared}


def next_round(state: DebateState) -> str:
    return END if state.get("done") else "open_round"


def build_graph() -> StateGraph[DebateState, Settings, DebateState, DebateState]:
    builder = StateGraph(DebateState, context_schema=Settings)
    builder.add_node("open_round", open_round)
    builder.add_node("propose", propose)  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("paint", paint)
    builder.add_node("paint_model", paint_model)  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("painted", painted)
    builder.add_node("critique", critique)  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("review", review)
    builder.add_node("revise", revise)  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("judging", judging)
    builder.add_node("judge", judge)  # type: ignore[call-overload, arg-type]  # a Send target takes a Task
    builder.add_node("consensus", consensus)
    for outcome in OUTCOME_NODES:
        builder.add_node(outcome, record_outcome(outcome))  # a Send target too
    builder.add_node("adversary", adversary)

    builder.add_edge(START, "open_round")
    builder.add_conditional_edges("open_round", to_proposers, ["propose"])
    builder.add_edge("propose", "paint")
    builder.add_conditional_edges("paint", to_painters, ["paint_model", "painted"])
    builder.add_edge("paint_model", "painted")
    builder.add_conditional_edges("painted", to_critics, ["critique", "review"])
    builder.add_edge("critique", "review")
    builder.add_conditional_edges("review", to_revisions, ["revise", "judging"])
    builder.add_edge("revise", "judging")
    builder.add_conditional_edges("judging", to_judges, ["judge", "consensus"])
    builder.add_edge("judge", "judging")  # the next wave of an adaptive jury, or consensus
    builder.add_conditional_edges("consensus", route_by_consensus, [*OUTCOME_NODES, "adversary"])
    for outcome in OUTCOME_NODES:
        builder.add_edge(outcome, "adversary")
    builder.add_conditional_edges("adversary", next_round, ["open_round", END])
    return builder


# For LangGraph Studio / `langgraph dev`: compiled without a checkpointer (the server brings one).
graph = build_graph().compile()
