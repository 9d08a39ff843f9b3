"""The consensus rule: how many blind judges agree with the reference, and what that decides.

C = number of judges whose answer matches the reference answer; K = judges that answered.
C below `min_agree` discards the problem; C up to `pool_max_agree` (default K-1) keeps it and puts
it in the adversarial pool (the panel split); higher C keeps it as an easy problem.

Weighted (`consensus: {weighted: true}`): each judge counts by its estimated accuracy w
(graphs.reliability, fitted on the lane's closed rounds, so a round's weights never depend on
timing), and C becomes the agreeing judges' share of the answering judges' weight, scaled to K:
    C_w = K * sum(w of agreeing judges) / sum(w of answering judges)
C_w goes through the same thresholds as C. With equal weights C_w = C, so the outcomes are the
unweighted ones (round 0, before any estimate, always is). What changes: a problem only judges
less reliable than the average reach is discarded (C_w < 1), and a dissent from such a judge
alone no longer makes a split (C_w > K-1: keep). A judge without an estimate weighs the mean of
the others. Off (the default), nothing here is used and outcomes are exactly the unweighted ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from cadsynth.agents.matching import answers_match
from cadsynth.config import ConsensusConfig
from cadsynth.domain import Consensus, Judgment, Outcome, Proposal


def judge_agrees(judgment: Judgment, proposal: Proposal) -> bool:
    if judgment.abstained:
        return False
    return answers_match(judgment.answer, proposal.reference_answer, proposal.answer_type, proposal.choices)


def outcome_for(score: float, judges: int, rule: ConsensusConfig) -> Outcome:
    if judges == 0 or score < rule.min_agree:
        return "discard"
    pool_max = rule.pool_max_agree if rule.pool_max_agree is not None else judges - 1
    return "adversarial" if score <= pool_max else "keep"


def weighted_score(answered: list[str], agreeing: list[str], weights: dict[str, float]) -> float:
    """C_w = K * (agreeing judges' weight) / (answering judges' weight); C when weights are equal."""
    if not answered:
        return 0.0
    known = [weights[j] for j in answered if j in weights]
    default = sum(known) / len(known) if known else 1.0
    weight = {j: weights.get(j, default) for j in answered}
    total = sum(weight.values())
    if total <= 0:
        return float(len(agreeing))
    return len(answered) * sum(weight[j] for j in agreeing) / total


def score(
    proposal: Proposal, judgments: list[Judgment], rule: ConsensusConfig, unasked: list[str] | None = None,
    weights: dict[str, float] | None = None,
) -> Consensus:
    answered = [j for j in judgments if not j.abstained]
    agreeing = sorted(j.judge for j in answered if judge_agrees(j, proposal))
    weighted = None
    if rule.weighted:  # rounded: equal weights must give C itself, not C less a rounding error
        weighted = round(weighted_score([j.judge for j in answered], agreeing, weights or {}), 9)
    return Consensus(
        proposal=proposal.id,
        run=proposal.run,
        round=proposal.round,
        score=len(agreeing),
        judges=len(answered),
        outcome=outcome_for(len(agreeing) if weighted is None else weighted, len(answered), rule),
        agreeing=agreeing,
        unasked=sorted(unasked or []),
        weighted_score=weighted,
    )


def _settled(agree: int, answered: int, remaining: int, rule: ConsensusConfig) -> bool:
    """Whether every way the remaining judges could answer (agree, disagree, abstain) gives one outcome."""
    outcomes = {
        outcome_for(agree + a, answered + a + d, rule)
        for a in range(remaining + 1)
        for d in range(remaining + 1 - a)
    }
    return len(outcomes) == 1


def judges_to_ask(proposal: Proposal, judgments: list[Judgment], remaining: int, rule: ConsensusConfig) -> int:
    """How many more judges an adaptive jury asks now: none once the outcome is settled, else the
    fewest whose answers could settle it (asking fewer would only add a wave)."""
    answered = [j for j in judgments if not j.abstained]
    agree = sum(judge_agrees(j, proposal) for j in answered)
    if remaining == 0 or _settled(agree, len(answered), remaining, rule):
        return 0
    for m in range(1, remaining):
        if any(_settled(agree + a, len(answered) + m, remaining - m, rule) for a in range(m + 1)):
            return m
    return remaining


JudgeRecord = dict[str, list[int]]  # judge -> [answers agreeing with the reference, answers]


def judge_record(record: JudgeRecord, judgments: Iterable[Judgment]) -> JudgeRecord:
    """`record` with a closed round's answers added."""
    updated = {judge: list(counts) for judge, counts in record.items()}
    for j in judgments:
        if not j.abstained:
            counts = updated.setdefault(j.judge, [0, 0])
            counts[0] += bool(j.agrees)
            counts[1] += 1
    return updated


def jury_order(judges: list[str], record: JudgeRecord) -> list[str]:
    """The order an adaptive jury asks in: by each judge's agreement with the reference over the
    closed rounds, the most and the least reliable first, then the next of each. Only a split
    settles early, and such a pair tends to split after two answers. With no record yet, the
    panel's order."""

    if not record:
        return list(judges)

    def rate(judge: str) -> float:
        agreed, answered = record.get(judge, [0, 0])
        return (agreed + 1) / (answered + 2)  # a judge with few answers counts as a coin flip

    ranked = sorted(judges, key=lambda j: -rate(j))  # stable: ties keep the panel's order
    return [ranked[i // 2] if i % 2 == 0 else ranked[-1 - i // 2] for i in range(len(ranked))]


def tally(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """The counts every report uses, defined once: kept = keep + adversarial; discarded = discard
    (by the judges) + dropped (by the critics, or unpainted), with dropped also on its own, and
    what the judges discarded (`judged_out`)."""
    n = Counter(outcomes)
    counts = {
        "kept": n["keep"] + n["adversarial"],
        "adversarial": n["adversarial"],
        "discarded": n["discard"] + n["dropped"],
        "dropped": n["dropped"],
    }
    return {**counts, "discarded_by_judges": judged_out(counts)}


def judged_out(counts: Mapping[str, int]) -> int:
    """Of the discarded, those the judges discarded (C = 0): the rest were dropped before judging.
    From any counts with `discarded` and `dropped` (a round's summary, a run's stats)."""
    return counts["discarded"] - counts.get("dropped", 0)
