"""How reliable each judge is, estimated from the run's own answers: no labelled data needed.

The estimate is the one-coin Dawid-Skene model fitted by EM. Each judged problem has one unknown
true answer among its candidates: the reference and every distinct answer the judges gave
(answers that `answers_match` are one candidate). Judge j gives the true answer with probability
p_j, and otherwise one of the problem's other candidates, each equally likely. The reference is a
candidate like any other, not the truth: that is what lets a judge that disagrees with a wrong
reference still score well.

E-step: the posterior over each problem's candidates, given every judge's p. M-step: p_j is the
expected share of its answers that were the truth, with one pseudo-answer each way (Laplace), so
a judge seen on few problems stays near a coin flip. It starts from a vote (the reference counts
as one voter), which keeps EM from the mirror solution where everyone is usually wrong.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cadsynth.agents.matching import answers_match
from cadsynth.domain import Judgment, Proposal


@dataclass(frozen=True)
class Votes:
    """One problem's answers: judge -> candidate index; the reference is candidate 0."""

    answers: Mapping[str, int]
    candidates: int


@dataclass(frozen=True)
class Reliability:
    estimated_accuracy: float
    judged: int  # answers it was estimated from (abstentions are none)


def votes(proposal: Proposal, judgments: Iterable[Judgment]) -> Votes:
    """A problem's blind answers as candidates: matching answers are one candidate."""
    candidates: list[str] = [proposal.reference_answer]
    answers: dict[str, int] = {}
    for j in sorted(judgments, key=lambda j: j.judge):
        if j.abstained or j.rationalized or j.answer is None:
            continue
        same = (i for i, c in enumerate(candidates) if answers_match(j.answer, c, proposal.answer_type, proposal.choices))
        found = next(same, None)
        if found is None:
            candidates.append(j.answer)
            found = len(candidates) - 1
        answers[j.judge] = found
    return Votes(answers, len(candidates))


def run_votes(proposals: Iterable[Proposal], judgments: Iterable[Judgment]) -> list[Votes]:
    by_problem: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_problem[j.proposal].append(j)
    return [v for p in proposals if (v := votes(p, by_problem.get(p.id, []))).answers]


def estimate(problems: Sequence[Votes], *, iterations: int = 200, tolerance: float = 1e-5) -> dict[str, Reliability]:
    """Each judge's estimated accuracy (one-coin Dawid-Skene, EM), in judge order."""
    judged: dict[str, int] = defaultdict(int)
    for v in problems:
        for judge in v.answers:
            judged[judge] += 1
    # The start: each problem's candidates weighed by votes, the reference one voter more.
    posteriors = []
    for v in problems:
        counts = [1.0 if c == 0 else 0.0 for c in range(v.candidates)]
        for c in v.answers.values():
            counts[c] += 1.0
        total = sum(counts)
        posteriors.append([n / total for n in counts])
    accuracy: dict[str, float] = {}
    for _ in range(iterations):
        right: dict[str, float] = defaultdict(float)
        for v, post in zip(problems, posteriors):
            for judge, c in v.answers.items():
                right[judge] += post[c]
        new = {judge: (right[judge] + 1.0) / (judged[judge] + 2.0) for judge in judged}
        converged = accuracy and max(abs(new[j] - accuracy[j]) for j in new) < tolerance
        accuracy = new
        if converged:
            break
        posteriors = [_posterior(v, accuracy) for v in problems]
    return {judge: Reliability(round(accuracy[judge], 4), judged[judge]) for judge in sorted(judged)}


def _posterior(v: Votes, accuracy: Mapping[str, float]) -> list[float]:
    """P(candidate is the truth | the answers), from a flat prior over the candidates."""
    if v.candidates == 1:
        return [1.0]
    logs = []
    for truth in range(v.candidates):
        total = 0.0
        for judge, c in v.answers.items():
            p = accuracy[judge]
            total += math.log(p) if c == truth else math.log((1.0 - p) / (v.candidates - 1))
        logs.append(total)
    top = max(logs)
    weights = [math.exp(x - top) for x in logs]
    norm = sum(weights)
    return [w / norm for w in weights]
