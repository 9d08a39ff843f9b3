"""Human review: a person overrules the consensus rule's outcomes before the round goes on.

With `review: true` a round pauses after its consensus (a LangGraph interrupt) with its problems and
their computed outcomes. The answer, from `cads review` or from Studio and the SDK
(`Command(resume=...)`), names the reviewer and the decisions that change something; a problem not
named keeps its computed outcome, so accepting all is an answer without decisions. The decided
outcome is what the outcome nodes record, so exports, stats and the adversary's pool all use it, and
each problem's decision goes to the ledger (`cads_reviews`) with who made it and when.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cadsynth.graphs.settings import Settings, resources
from cadsynth.graphs.state import DebateState
from cadsynth import lifecycle

# A person's words for the outcomes: "pool" is the adversarial pool (kept, and the adversary reads it).
Decided = Literal["keep", "discard", "pool"]
AS_OUTCOME = {"keep": "keep", "discard": "discard", "pool": "adversarial"}
AS_DECISION = {"keep": "keep", "discard": "discard", "adversarial": "pool"}
HOW_TO_ANSWER = (
    '{"reviewer": "NAME", "decisions": {"PROBLEM_ID": {"outcome": "keep | discard | pool", "note": "why (optional)"}}}; '
    "a problem not named keeps its outcome"
)


class ReviewError(ValueError):
    """An answer to a review that cannot be applied, in one line naming the bad value."""


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Decided
    note: str | None = None


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=128)
    decisions: dict[str, Decision] = Field(default_factory=dict)


def reviewable(waiting: dict[str, Any]) -> list[dict[str, Any]]:
    """The problems a person decides: the judged ones (the critics' drops were never judged)."""
    return [p for p in waiting["problems"] if p["outcome"] != "dropped"]


def check(answer: object, waiting: dict[str, Any]) -> Answer:
    """The answer to the review pause `waiting`, validated; ReviewError says what is wrong with it."""
    if not isinstance(answer, dict):
        raise ReviewError(f"the answer to a review is a mapping {HOW_TO_ANSWER}, not {str(answer)[:80]!r}")
    try:
        parsed = Answer.model_validate(answer)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) for part in err["loc"]]
        given = err.get("input")
        if loc[:1] == ["decisions"] and loc[2:] == ["outcome"]:
            raise ReviewError(f"decision for {loc[1]!r}: outcome {given!r} is not one of keep, discard, pool") from None
        shown = "" if err["type"] == "missing" else f" {given!r}"
        raise ReviewError(f"{'.'.join(loc) or 'answer'}{shown}: {err['msg']} (answer {HOW_TO_ANSWER})") from None
    problems = {p["id"]: p for p in waiting["problems"]}
    for pid in parsed.decisions:
        if pid not in problems:
            raise ReviewError(f"decision for {pid!r}: no such problem waits for review in run {waiting['run']!r} round {waiting['round']}")
        if problems[pid]["outcome"] == "dropped":
            raise ReviewError(f"decision for {pid!r}: the critics dropped it before any judge saw it; only judged problems are decided")
    return parsed


def waiting_round(state: DebateState, lane: int | None) -> dict[str, Any]:
    """What a person is shown: the round's problems with their computed outcomes (images by hash only)."""
    proposals = state.get("proposals", {})
    problems = []
    for pid, verdict in sorted(state.get("consensus", {}).items()):
        p = proposals.get(pid, {})
        problems.append({
            "id": pid,
            "question": p.get("question"),
            "choices": p.get("choices"),
            "reference_answer": p.get("reference_answer"),
            "score": verdict["score"],
            "judges": verdict["judges"],
            "outcome": verdict["outcome"],
            "image": p.get("image"),
        })
    return {
        "reason": "review",
        "run": state["run"],
        "lane": lane,
        "round": state["round"],
        "problems": problems,
        "answer": HOW_TO_ANSWER,
    }


async def human_review(state: DebateState, runtime: Runtime[Settings]) -> dict[str, Any]:
    """Pause for a person's decisions on the round's outcomes; go on with the decided ones."""
    res = await resources(runtime.context)
    asked = waiting_round(state, (await res.run(state["run"])).config.lane)
    if not reviewable(asked):
        return {}  # the critics dropped everything: nothing to decide
    ledger = res.ledger
    await lifecycle.waiting_for_review(ledger, state["run"])
    question = asked
    while True:
        reply = interrupt(question)
        try:
            answer = check(reply, asked)
            break
        except ReviewError as exc:
            # Nothing is recorded for a bad answer: the same round is asked again, saying why.
            question = {**asked, "error": str(exc)}
    decided_at = datetime.now(UTC)
    rows, changed = [], {}
    for problem in reviewable(asked):
        decision = answer.decisions.get(problem["id"])
        outcome = AS_OUTCOME[decision.outcome] if decision else problem["outcome"]
        rows.append({
            "run": state["run"], "proposal": problem["id"], "round": state["round"], "computed": problem["outcome"],
            "decided": outcome, "note": decision.note if decision else None, "reviewer": answer.reviewer,
            "decided_at": decided_at,
        })
        if outcome != problem["outcome"]:
            changed[problem["id"]] = {**state["consensus"][problem["id"]], "outcome": outcome}
    await ledger.put_reviews(rows)  # an upsert: recorded again after a crash, still one row each
    await lifecycle.resumed(ledger, state["run"])
    return {"consensus": changed} if changed else {}
