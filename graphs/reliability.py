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

Two problems whose judges split the same way (the same judges on the reference, the same on each
other candidate) weigh the same in every step, so the fit needs only how many problems showed
each such pattern (`VoteCounts`): a handful of patterns, however long the run. A run keeps its
counts with its state and adds each closed round's patterns to them (graphs.rounds), so each
round's fit costs the same in round 5 as in round 500, and equals the fit over every problem at once.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cadsynth.agents.matching import answers_match
from cadsynth.domain import Judgment, Proposal


@dataclass(frozen=True)
class Votes:
    """One problem's answers: judge -> candidate index; the reference is candidate 0."""

    answers: Mapping[str, int]
    candidates: int

    @property
    def pattern(self) -> str:
        """The answers as one key, e.g. `3 a=0 b=1 c=2` (agent names never hold a space or `=`)."""
        return " ".join([str(self.candidates), *(f"{judge}={c}" for judge, c in sorted(self.answers.items()))])

    @classmethod
    def of_pattern(cls, pattern: str) -> Votes:
        candidates, *answers = pattern.split(" ")
        return cls({judge: int(c) for judge, _, c in (a.partition("=") for a in answers)}, int(candidates))


# How many problems showed each pattern of answers (`Votes.pattern`): all the fit needs to know.
VoteCounts = dict[str, int]


def count_votes(problems: Iterable[Votes], into: Mapping[str, int] | None = None) -> VoteCounts:
    """`into` with `problems` added: counts add, so counts kept round by round equal counts made at once."""
    counts = Counter(into or {})
    counts.update(v.pattern for v in problems if v.answers)
    return dict(sorted(counts.items()))


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


def estimate(problems: Iterable[Votes]) -> dict[str, Reliability]:
    """Each judge's estimated accuracy (one-coin Dawid-Skene, EM), in judge order."""
    return fit(count_votes(problems))


def fit(counts: Mapping[str, int], *, iterations: int = 200, tolerance: float = 1e-5) -> dict[str, Reliability]:
    """`estimate` from vote counts: EM over the patterns, each weighing as many problems as showed it."""
    patterns = [(Votes.of_pattern(key), n) for key, n in sorted(counts.items())]
    judged: dict[str, int] = defaultdict(int)
    for v, n in patterns:
        for judge in v.answers:
            judged[judge] += n
    # The start: each problem's candidates weighed by votes, the reference one voter more.
    posteriors = []
    for v, _ in patterns:
        votes = [1.0 if c == 0 else 0.0 for c in range(v.candidates)]
        for c in v.answers.values():
            votes[c] += 1.0
        total = sum(votes)
        posteriors.append([x / total for x in votes])
    accuracy: dict[str, float] = {}
    for _ in range(iterations):
        right: dict[str, float] = defaultdict(float)
        for (v, n), post in zip(patterns, posteriors):
            for judge, c in v.answers.items():
                right[judge] += n * post[c]
        new = {judge: (right[judge] + 1.0) / (judged[judge] + 2.0) for judge in judged}
        converged = accuracy and max(abs(new[j] - accuracy[j]) for j in new) < tolerance
        accuracy = new
        if converged:
            break
        posteriors = [_posterior(v, accuracy) for v, _ in patterns]
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
