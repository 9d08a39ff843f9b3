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

from langgraph.graph import END, START, StateGraph

from cadsynth.graphs.problem import problem
from cadsynth.graphs.review import human_review
from cadsynth.graphs.rounds import (
    OUTCOME_NODES,
    adversary,
    after_consensus,
    consensus,
    fails_the_run,
    next_round,
    open_round,
    record_outcome,
    route_by_consensus,
    to_problems,
)
from cadsynth.graphs.settings import Settings
from cadsynth.graphs.state import DebateState


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
