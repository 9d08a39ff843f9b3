"""A round's lifecycle in the graph: it opens (after the budget check), its problems are sent out,
their verdicts meet at the consensus barrier and go by their outcomes, and the adversary closes it
with the next context. A node that raises fails the run (cadsynth.lifecycle writes the status).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Send, interrupt

from cadsynth import lifecycle
from cadsynth.config import RunConfig, load_config
from cadsynth.domain import (
    Consensus,
    Context,
    Judgment,
    Proposal,
    RoundSummary,
)
from cadsynth.graphs import consensus as rule
from cadsynth.graphs import dedup
from cadsynth.graphs.calls import ask
from cadsynth.graphs import reliability
from cadsynth.graphs.plan import initial_context
from cadsynth.graphs.settings import Resources, Settings, resources
from cadsynth.graphs.state import DebateState, Task
from cadsynth.store.ledger import lease_owner


def _task(state: DebateState, **extra: Any) -> Task:
    """A task's payload: its run and round and what it works on; the config it finds by the run."""
    return cast(Task, {"run": state["run"], "round": state["round"], **extra})


def _proposals(state: DebateState) -> list[Proposal]:
    return sorted((Proposal.model_validate(p) for p in state.get("proposals", {}).values()), key=lambda p: p.id)


# --- the run's status: the graph reports it to cadsynth.lifecycle --------------------------------
# Here a run stops at its budget, finishes, or fails, whether the CLI drives it or Studio's server.


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
    round_ = state.get("round", 0)
    if round_ > 0:
        await _hold_for_budget(res, run, round_)  # before anything of the round is written
    context = Context.model_validate(state["context"]) if state.get("context") else initial_context()
    if round_ == 0 and await res.ledger.run(run, derive=False) is None:
        # Studio's input (or nothing): the CLI has recorded its runs before their first step.
        given = RunConfig.model_validate(state.get("config") or load_config(None).model_dump(mode="json"))
        await lifecycle.begin(res.ledger, run, given.model_dump(mode="json"), given.seed)
    if await res.ledger.claim(run, lease_owner()):  # the CLI holds it already; Studio's server takes it here
        await lifecycle.resumed(res.ledger, run)
    await res.ledger.put_context(run, round_, context)
    res.remember_context(run, round_, context)
    # Only what is not in the state yet: every value returned here is stored again with the step.
    # The config given as input is the run's now (its ledger row): the state does not carry it on.
    missing = {"run": run, "round": round_, "context": context.model_dump(mode="json"), "kept": 0}
    cleared = {"config": None} if state.get("config") is not None else {}
    return {key: value for key, value in missing.items() if key not in state} | cleared | {"done": False}


async def _config(state: DebateState) -> RunConfig:
    """The run's config, for an edge (a node has its runtime; an edge finds it the same way)."""
    return (await (await resources(get_runtime(Settings).context)).run(state["run"])).config


async def to_problems(state: DebateState) -> list[Send] | Literal["consensus"]:
    """One problem per proposer and slot; each moves through the round on its own."""
    config = await _config(state)
    slots = [(agent.name, index) for agent in config.agents("proposer") for index in range(config.proposals_per_agent)]
    jury = rule.jury_order([j.name for j in config.agents("judge")], state.get("judges", {}))
    weights = {"weights": state.get("reliability") or {}} if config.consensus.weighted else {}
    sends = [
        Send("problem", _task(state, agent=name, index=index, slot=slot, jury=jury, **weights))
        for slot, (name, index) in enumerate(slots)
    ]
    return sends or "consensus"


async def consensus(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    """Every problem of the round has its verdict: the consensus edges route each. The round's
    judged problems are fingerprinted here for the near-duplicate gate (graphs.dedup)."""
    res = await resources(runtime.context)
    if (await res.run(state["run"])).config.gates.near_duplicates.enabled:
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


async def after_consensus(state: DebateState) -> list[Send] | Literal["human_review", "adversary"]:
    """A run under review waits for a person's decisions before any outcome is recorded."""
    if state.get("consensus") and (await _config(state)).review:
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


async def _votes_so_far(
    res: Resources, state: DebateState, proposals: list[Proposal], judgments: list[Judgment]
) -> reliability.VoteCounts:
    """The lane's answers through this round, counted: the closed rounds' counts the state carries
    plus this round's. A state without them (a fork of a run without weights, a checkpoint from
    before they were kept) has them counted once from the ledger, every round of the lane so far."""
    if state.get("votes") is None:
        run = state["run"]
        return reliability.count_votes(reliability.run_votes(await res.ledger.proposals(run), await res.ledger.judgments(run)))
    return reliability.count_votes(reliability.run_votes(proposals, judgments), into=state["votes"])


async def adversary(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    res = await resources(runtime.context)
    run, round_ = state["run"], state["round"]
    config = (await res.run(run)).config
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
    weights: dict[str, Any] = {}
    if config.consensus.weighted:  # the next round's weights: every closed round of this lane
        votes = await _votes_so_far(res, state, proposals, judgments)
        weights = {"votes": votes, "reliability": {name: r.estimated_accuracy for name, r in reliability.fit(votes).items()}}
    elif state.get("votes") is not None:  # a fork without weights: a later fork with them counts its rounds too
        weights = {"votes": None, "reliability": None}
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
        reply, calls = await ask(res, agent, _task(state), "adversary", f"r{round_}/context", call)
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
        **weights, **cleared,
    }


def next_round(state: DebateState) -> str:
    return END if state.get("done") else "open_round"
