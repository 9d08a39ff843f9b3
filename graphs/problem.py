"""One problem, start to verdict: propose, paint, critique, revise, the blind pass, judge, score.

It moves on as soon as its own last call is done, never waiting for another problem of the round
(graphs.debate has the whole flow; the calls are in graphs.calls).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from langgraph.runtime import Runtime

from cadsynth.config import RunConfig
from cadsynth.domain import (
    Consensus,
    Critique,
    DropReason,
    Judgment,
    Proposal,
)
from cadsynth.graphs import consensus as rule
from cadsynth.graphs import legibility
from cadsynth.graphs.calls import blind_judge, critique, judge, paint, propose, rationalize, revise
from cadsynth.graphs.settings import Resources, Settings, resources
from cadsynth.graphs.state import Task
from cadsynth.store.ledger import CallRecord
from cadsynth.store.patience import DatabaseUnavailable


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


async def _each(took: Took, calls: Iterable[Awaitable[dict[str, Any]]]) -> list[Any]:
    """What the calls made, in order, once all are done. Each answer is taken as it comes, so what a
    call cost is recorded even if another raises (refused: the run is stopping) or the run is cut short."""

    async def taken(call: Awaitable[dict[str, Any]]) -> Any:
        return took(await call)

    made = await asyncio.gather(*map(taken, calls), return_exceptions=True)
    for answer in made:
        if isinstance(answer, BaseException):
            raise answer
    return made


def _blind_judge_for(config: RunConfig, proposal: Proposal, slot: int) -> str:
    """Who takes the blind pass: the judges in turn by slot, never the problem's own proposer."""
    judges = [j.name for j in config.agents("judge") if j.name != proposal.proposer] or [j.name for j in config.agents("judge")]
    return judges[slot % len(judges)]


async def _critics(config: RunConfig, about: dict[str, Any], proposal: Proposal, took: Took, *, recheck: bool = False) -> list[Critique]:
    critics = [c for c in config.agents("critic") if c.name != proposal.proposer]
    ask = {**about, "proposal": proposal.model_dump(mode="json"), "consistency": config.gates.consistency, "recheck": recheck}
    reviews = await _each(took, (critique({**ask, "agent": c.name}) for c in critics))
    return [Critique.model_validate(made) for made in reviews if made is not None]


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
        answers = await _each(took, (judge({**job, "agent": j.name}) for j in asked))
        judgments += [Judgment.model_validate(a) for a in answers]
    return judgments


async def problem(job: Task, runtime: Runtime[Settings]) -> dict[str, Any]:
    """One problem from proposal to verdict: propose, paint, critique (with the consistency checks
    when that gate is on), revise if the critics ask, the blind pass (image necessity gate), judge,
    score. It moves on as soon as its own last step is done, never waiting for another
    problem of the round.

    Every model call is a task whose result LangGraph keeps as it finishes, so a crash repeats only
    the calls in flight: re-run, the problem gets its finished calls' results back and carries on.
    What it made and every request it took are recorded in one transaction when it is done; if it
    ends early (a call refused because the run is stopping raises GraphDrained), the requests it
    took are recorded then.
    """
    res = await resources(runtime.context)
    calls: list[CallRecord] = []

    def took(answer: dict[str, Any]) -> Any:
        calls.extend(CallRecord(**c) for c in answer["calls"])
        return answer["made"]

    try:
        return await _to_verdict(job, (await res.panel_of(job["run"])).config, res, took, calls)
    except BaseException:
        # Ended early (the run stopping, cut short or failing): what it paid for is in the ledger
        # before the process ends. Resumed, the problem runs again: its finished calls come back
        # from the checkpoint, and their rows are not written twice. A database gone past its
        # patience cannot take them: the run's own failure says so, not this write's.
        with contextlib.suppress(DatabaseUnavailable):
            await res.ledger.write(calls=calls)
        raise


async def _to_verdict(job: Task, config: RunConfig, res: Resources, took: Took, calls: list[CallRecord]) -> dict[str, Any]:
    ledger = res.ledger
    proposed = took(await propose(job))
    if proposed is None:
        await ledger.write(calls=calls)
        return {}  # the proposer's call gave up: no problem
    proposal = Proposal.model_validate(proposed)
    if proposal.image is None:
        proposal = Proposal.model_validate(took(await paint({**job, "proposal": proposal.model_dump(mode="json")})))
    dropped: DropReason | None = None if proposal.image is not None else "unpainted"
    if config.gates.legibility and dropped is None:
        async def repaint(p: Proposal) -> Proposal:  # the next painter draws it (its own task slot)
            made = took(await paint({**job, "proposal": p.model_dump(mode="json"), "slot": job.get("slot", 0) + 1}))
            return Proposal.model_validate(made)

        proposal, legible = await legibility.gate(res, job, config, proposal, repaint)
        dropped = None if legible else "illegible"
    about = {**job, "proposal": proposal.model_dump(mode="json")}
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
        rationales = [Judgment.model_validate(made) for made in await _each(took, tries) if made is not None]
    # Rationalized judgments go to the ledger only: they are training text, not answers the round weighs.
    await ledger.write(proposals=[proposal], critiques=critiques, judgments=judged + rationales, calls=calls)
    return {
        "proposals": {proposal.id: proposal.model_dump(mode="json")},
        "critiques": {c.id: c.model_dump(mode="json") for c in critiques},
        "judgments": {j.id: j.model_dump(mode="json") for j in judged},
        "consensus": {proposal.id: verdict.model_dump(mode="json")},
    }
