"""The debate's state: what flows between nodes. JSON-only, so checkpoints stay portable and small.

Images are never here: proposals carry the blob store's content hash.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict


def merge_round(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Records of the current round, by id. A node returns None to clear them for a new round."""
    if right is None:
        return {}
    return {**(left or {}), **right}


class DebateState(TypedDict, total=False):
    run: str
    # The config a run is started with (Studio's input): open_round records it as the run's (its
    # ledger row, read through graphs.settings.Run) and clears it; nodes never read it here.
    config: dict[str, Any] | None
    round: int
    context: dict[str, Any]  # domain.Context steering this round
    proposals: Annotated[dict[str, Any], merge_round]  # id -> domain.Proposal
    critiques: Annotated[dict[str, Any], merge_round]  # id -> domain.Critique
    judgments: Annotated[dict[str, Any], merge_round]  # id -> domain.Judgment
    consensus: Annotated[dict[str, Any], merge_round]  # proposal id -> domain.Consensus
    kept: int  # samples kept over all rounds so far
    judges: dict[str, list[int]]  # consensus.JudgeRecord over the closed rounds: orders an adaptive jury
    # consensus: {weighted: true}: each judge's estimated accuracy over the closed rounds, and the
    # closed rounds' answers counted by pattern (graphs.reliability.VoteCounts), which it is fitted on
    reliability: dict[str, float] | None
    votes: dict[str, int] | None
    done: bool


class Task(TypedDict, total=False):
    """What a problem and each of its model calls receive: ids and what they work on.

    Not the config or the context: a task finds them by its run and round (graphs.settings), so
    payloads stay small.
    """

    run: str
    round: int
    agent: str
    index: int  # the proposer's slot
    slot: int  # the problem's place in the round
    jury: list[str]  # the order an adaptive jury asks its judges in
    weights: dict[str, float]  # consensus: {weighted: true}: judge -> estimated accuracy
    proposal: dict[str, Any]
    critiques: list[dict[str, Any]]
    consensus: dict[str, Any]
    judgment: dict[str, Any]  # a judge's earlier answer, for its rationalization
    consistency: bool  # gates.consistency: a critic answers the explicit checks too
    recheck: bool  # the consistency gate's second look after a revision
