"""A run's samples as read back from the ledger: what every export and the report show.

A sample is a judged proposal with its verdict, every judge's answer and its training rationales:
the proposer's worked solution, and each rationale that reached the reference answer (STaR keeps
those for free). A judgment marked `rationalized` was written after its judge saw the reference:
it adds a rationale and never an answer, so it leaves `asked` and the judges' answers alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cadsynth.domain import Consensus, Judgment, Outcome, Proposal
from cadsynth.store.blobs import PREFIX, BlobStore
from cadsynth.store.ledger import Ledger, UnknownRunError

# What `--include` selects. "all" is everything the judges saw; the critics' drops never were.
INCLUDE: dict[str, tuple[Outcome, ...]] = {
    "kept": ("keep", "adversarial"),
    "adversarial": ("adversarial",),
    "all": ("keep", "adversarial", "discard"),
}
OUTCOMES: tuple[Outcome, ...] = ("keep", "adversarial", "discard", "dropped")


class MissingImagesError(LookupError):
    """The samples' images are not in the data folder given (another --data, or deleted)."""


@dataclass(frozen=True)
class Rationale:
    by: str  # the agent that wrote it
    role: str  # "proposer" (its worked solution) or "judge"
    text: str
    rationalized: bool  # written after seeing the reference answer


@dataclass(frozen=True)
class JudgeAnswer:
    judge: str
    answer: str | None
    confidence: float
    agrees: bool | None
    abstained: bool


@dataclass(frozen=True)
class Sample:
    proposal: Proposal
    verdict: Consensus
    lane: int
    answers: tuple[JudgeAnswer, ...]
    rationales: tuple[Rationale, ...]

    @property
    def id(self) -> str:
        return self.proposal.id

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    @property
    def image(self) -> str | None:
        """The image's content hash in the blob store."""
        return self.proposal.image

    def record(self, image: str | None) -> dict[str, Any]:
        """The sample with provenance, its image given as the caller lays it out (a relative path)."""
        p = self.proposal
        return {
            "id": p.id,
            "image": image,
            "question": p.question,
            "answer_type": p.answer_type,
            "choices": p.choices,
            "answer": p.reference_answer,
            "solution": p.solution,
            "rationales": [asdict(r) for r in self.rationales],
            "consensus": self.verdict.score,
            "judges": self.verdict.judges,
            "asked": len(self.answers),  # fewer than the panel's judges when an adaptive jury stopped early
            "outcome": self.verdict.outcome,
            "answers": [asdict(a) for a in self.answers],
            "run": p.run,
            "lane": self.lane,
            "round": p.round,
            "proposer": p.proposer,
            "seed": p.seed_id,
            "strategy": p.strategy,
            "capabilities": list(p.capabilities),
            "difficulty": p.difficulty,
        }


def _sample(p: Proposal, verdict: Consensus, judgments: Iterable[Judgment], lane: int) -> Sample:
    answers, rationales = [], [Rationale(by=p.proposer, role="proposer", text=p.solution, rationalized=False)]
    for j in judgments:
        if not j.rationalized:
            answers.append(JudgeAnswer(j.judge, j.answer, j.confidence, j.agrees, j.abstained))
        if j.agrees and j.rationale:
            rationales.append(Rationale(by=j.judge, role="judge", text=j.rationale, rationalized=j.rationalized))
    rationales.sort(key=lambda r: r.rationalized)  # the blind ones first (a stable sort keeps the judges' order)
    return Sample(p, verdict, lane, tuple(answers), tuple(rationales))


async def lanes(ledger: Ledger, run: str) -> list[str]:
    """The run ids holding a run's records: its lanes in order, or the run itself."""
    if await ledger.run(run) is None:
        raise UnknownRunError(f"no run {run!r} in this database; `cads runs` lists the runs")
    return [lane["id"] for lane in await ledger.lanes(run)] or [run]


async def samples(ledger: Ledger, run: str, outcomes: Iterable[Outcome]) -> list[Sample]:
    """The run's samples with these outcomes, lane by lane, in the order they were proposed; never
    one the near-duplicate gate removed (graphs.dedup), so no export holds both of a pair."""
    wanted = set(outcomes)
    removed = {d.proposal for d in await ledger.duplicates(run)}
    out: list[Sample] = []
    for lane, member in enumerate(await lanes(ledger, run)):
        verdicts = {c.proposal: c for c in await ledger.consensus(member)}
        judgments: dict[str, list[Judgment]] = defaultdict(list)
        for j in await ledger.judgments(member):
            judgments[j.proposal].append(j)
        out.extend(
            _sample(p, verdicts[p.id], judgments[p.id], lane)
            for p in await ledger.proposals(member)
            if p.id in verdicts and verdicts[p.id].outcome in wanted and p.id not in removed
        )
    return out


def require_images(chosen: list[Sample], blobs: BlobStore) -> None:
    """Every sample's image is in the data folder, or one line that says which folder to give."""
    missing = [s.image for s in chosen if s.image and not blobs.exists(s.image)]
    if missing:
        raise MissingImagesError(
            f"{len(missing)} of {len(chosen)} images are not there (e.g. {blobs.path(missing[0])}); "
            "pass the --data folder the run used"
        )


def image_name(ref: str) -> str:
    """An image's file name in an export: its content hash, so equal images are one file."""
    return f"{ref.removeprefix(PREFIX)}.png"
