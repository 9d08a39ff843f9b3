"""The consensus rule: how many blind judges agree with the reference, and what that decides.

C = number of judges whose answer matches the reference answer; K = judges that answered.
C below `min_agree` discards the problem; C up to `pool_max_agree` (default K-1) keeps it and puts
it in the adversarial pool (the panel split); higher C keeps it as an easy problem.
"""

from __future__ import annotations

from cadsynth.agents.matching import answers_match
from cadsynth.config import ConsensusConfig
from cadsynth.domain import Consensus, Judgment, Outcome, Proposal


def judge_agrees(judgment: Judgment, proposal: Proposal) -> bool:
    if judgment.abstained:
        return False
    return answers_match(judgment.answer, proposal.reference_answer, proposal.answer_type, proposal.choices)


def outcome_for(score: int, judges: int, rule: ConsensusConfig) -> Outcome:
    if judges == 0 or score < rule.min_agree:
        return "discard"
    pool_max = rule.pool_max_agree if rule.pool_max_agree is not None else judges - 1
    return "adversarial" if score <= pool_max else "keep"


def score(proposal: Proposal, judgments: list[Judgment], rule: ConsensusConfig) -> Consensus:
    answered = [j for j in judgments if not j.abstained]
    agreeing = sorted(j.judge for j in answered if judge_agrees(j, proposal))
    return Consensus(
        proposal=proposal.id,
        run=proposal.run,
        round=proposal.round,
        score=len(agreeing),
        judges=len(answered),
        outcome=outcome_for(len(agreeing), len(answered), rule),
        agreeing=agreeing,
    )
