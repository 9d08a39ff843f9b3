"""The near-duplicate gate: no two samples of a run are the same problem.

Two judged problems are near-duplicates when their images AND their questions are close:
- images: perceptual hashes (imagehash's pHash, 16x16 = 256 bits) at most `image_distance` bits
  apart. The 8x8 default hash is too coarse for charts: two line charts of one template with other
  data were 4 bits of 64 apart, 44 of 256; a value moved by one stays within about 16 of 256;
- questions: the Jaccard similarity of their word pairs at least `question_similarity`, exactly
  (a MinHash estimate's error, about 0.04 at 128 permutations, is as large as the gap between a
  reworded question and a question about another bar of the same chart). Each fingerprint keeps a
  datasketch MinHash of its question too, which the pass no longer reads (`near_duplicates`).
Both, because either alone is normal in a good data set: one chart asked several different
questions, or one templated question ("What is the area of the circle?") over different figures.
Word pairs rather than words, so that word order counts for something. A known limit: over one
image, "Is A taller than B?" and "Is B taller than A?" share most word pairs, so one of them goes.

Which one survives never depends on timing: one pass over the whole run (every round of every lane)
walks the judged problems in a fixed order — kept before discarded (a duplicate never costs the data
set a kept sample), then by round, lane, proposer and slot — and removes each problem that is a
near-duplicate of one that survived before it, recording which. The pass runs when the run stops
(`cadsynth.runner`; the graph itself for a run without lanes) and again whenever it is run again;
fingerprints are taken at each round's barrier, so the pass reads hashes, never images. It looks
up each problem's near images in an index of the survivors so far, so it finds what comparing
every pair would, without comparing every pair; and it reads a few columns of each problem.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cadsynth.config import NearDuplicatesConfig, RunConfig
from cadsynth.domain import Consensus, Proposal
from cadsynth.store.blobs import BlobStore
from cadsynth.store.ledger import Duplicate, Fingerprint, Ledger

NUM_PERM = 128  # MinHash permutations: the similarity estimate's error is about 1/sqrt(128) ~ 0.09
MINHASH_SEED = 1  # fixed, so signatures taken in any process compare
MINHASH_SCHEME = "affine32"  # named: a stored signature is rebuilt with the scheme that made it
HASH_SIZE = 16  # pHash side: 256 bits, 64 hex digits
KEPT = ("keep", "adversarial")


def question_shingles(question: str) -> set[str]:
    """The question's word pairs, lower-cased, punctuation dropped; a one-word question is its word."""
    words = re.findall(r"\w+", question.lower())
    return {f"{a} {b}" for a, b in zip(words, words[1:])} or set(words)


def question_minhash(question: str) -> list[int]:
    from datasketch import MinHash  # type: ignore[import-untyped]

    signature = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
    signature.update_batch([s.encode() for s in sorted(question_shingles(question))])
    return [int(v) for v in signature.hashvalues]


def image_hash(png: bytes) -> str:
    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return str(imagehash.phash(image, hash_size=HASH_SIZE))


def fingerprint(proposal: Proposal, png: bytes) -> Fingerprint:
    return Fingerprint(proposal.id, proposal.run, proposal.round, image_hash(png), question_minhash(proposal.question))


async def fingerprint_round(ledger: Ledger, blobs: BlobStore, proposals: Iterable[Proposal], verdicts: dict[str, Consensus]) -> None:
    """Fingerprint the round's judged problems (the critics' drops are in no data set)."""
    judged = [p for p in proposals if p.image and p.id in verdicts and verdicts[p.id].outcome != "dropped"]

    def take() -> list[Fingerprint]:
        return [fingerprint(p, blobs.get(p.image)) for p in judged if p.image]

    await ledger.put_fingerprints(await asyncio.to_thread(take))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A judged problem in the pass's order, with what the pass compares of it."""

    proposal: str
    kept: bool
    round: int
    lane: int
    proposer: str
    index: int
    image_hash: str
    question: str

    @property
    def order(self) -> tuple[bool, int, int, str, int]:
        return (not self.kept, self.round, self.lane, self.proposer, self.index)


def near_duplicates(candidates: Iterable[Candidate], rule: NearDuplicatesConfig) -> list[Duplicate]:
    """The pass: walk in order, remove what duplicates an earlier survivor (the earliest such).

    A candidate is compared only with the survivors whose image hash shares a piece with its own
    (`_HashIndex`), and finds exactly what comparing it with every survivor would. The image decides
    first: in a run, a question recurs over many images (a template) far more often than an image
    recurs. The pass holds its own ordered copy of the candidates and lets each go once walked: at
    its end it holds the survivors and its index, not a run's worth of candidates as well."""
    index = _HashIndex(rule.image_distance)
    survivors: list[tuple[str, int, str]] = []  # proposal, image hash, question; by position
    removed: list[Duplicate] = []
    walk = sorted(candidates, key=lambda c: c.order)
    walk.reverse()  # taken from the end, in order
    while walk:
        c = walk.pop()
        picture = int(c.image_hash, 16)
        words: set[str] | None = None
        for position in index.near(picture):  # the earliest survivor first
            earlier, their_picture, their_question = survivors[position]
            distance = (picture ^ their_picture).bit_count()
            if not images_near(distance, rule):
                continue
            words = question_shingles(c.question) if words is None else words
            similarity = jaccard(words, question_shingles(their_question))
            if questions_near(similarity, rule):
                removed.append(Duplicate(c.proposal, earlier, distance, round(similarity, 4)))
                break
        else:
            index.add(picture)
            survivors.append((c.proposal, picture, c.question))
    return removed


def images_near(distance: int, rule: NearDuplicatesConfig) -> bool:
    """The rule's image half: pHashes at most `image_distance` bits apart."""
    return distance <= rule.image_distance


def questions_near(similarity: float, rule: NearDuplicatesConfig) -> bool:
    """The rule's question half: word-pair Jaccard similarity at least `question_similarity`."""
    return similarity >= rule.question_similarity


def near_pairs(problems: Sequence[tuple[str, str]], rule: NearDuplicatesConfig) -> Iterator[tuple[int, int]]:
    """Every pair (i, j), i < j, of problems given as (image hash, question) that the gate's rule
    calls one problem, whoever would survive: what splitting a data set must keep together. The
    same index as the pass, over all problems rather than the survivors."""
    index = _HashIndex(rule.image_distance)
    pictures = [int(image, 16) for image, _ in problems]
    words: dict[int, set[str]] = {}

    def shingles(i: int) -> set[str]:
        if i not in words:
            words[i] = question_shingles(problems[i][1])
        return words[i]

    for j, picture in enumerate(pictures):
        for i in index.near(picture):
            if images_near((picture ^ pictures[i]).bit_count(), rule) and questions_near(jaccard(shingles(i), shingles(j)), rule):
                yield i, j
        index.add(picture)


class _HashIndex:
    """Image hashes by position, looked up by pieces of the hash: two hashes at most `distance` bits
    apart agree on at least one of `distance + 1` pieces (were every piece to differ, so would as
    many bits). So the hashes near one are among those that share a piece with it."""

    def __init__(self, distance: int) -> None:
        self._pieces = _pieces(distance)
        # One table per piece, from the piece's bits to the positions that have them.
        self._tables: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in self._pieces]
        self._added = 0

    def near(self, picture: int) -> Iterable[int]:
        """The positions added so far that may be near `picture`, in order: those sharing a piece
        with it, or all of them when the rule lets any two images meet (no pieces)."""
        if not self._pieces:
            return range(self._added)
        return sorted({p for table, (low, mask) in zip(self._tables, self._pieces) for p in table.get((picture >> low) & mask, ())})

    def add(self, picture: int) -> None:
        """`picture` at the next position."""
        for table, (low, mask) in zip(self._tables, self._pieces):
            table[(picture >> low) & mask].append(self._added)
        self._added += 1


HASH_BITS = HASH_SIZE * HASH_SIZE


@functools.cache
def _pieces(distance: int) -> list[tuple[int, int]]:
    """The image hash cut into `distance + 1` pieces, each as (lowest bit, mask); none when the rule
    lets any two images meet (every survivor is then compared)."""
    if distance + 1 > HASH_BITS:
        return []
    bounds = [HASH_BITS * i // (distance + 1) for i in range(distance + 2)]
    return [(low, (1 << (high - low)) - 1) for low, high in zip(bounds, bounds[1:])]


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


async def settle(ledger: Ledger, run: str) -> list[Duplicate]:
    """Run the pass over `run` (all its lanes) and record its removals; none when the gate is off."""
    record = await ledger.run(run)
    if record is None:
        return []
    rule = RunConfig.model_validate(record["config"]).gates.near_duplicates
    removed: list[Duplicate] = []
    if rule.enabled:
        members = [lane["id"] for lane in await ledger.lanes(run)] or [run]
        removed = near_duplicates(_handed_over(await _candidates(ledger, members)), rule)
    await ledger.put_duplicates(run, removed)
    return removed


async def _candidates(ledger: Ledger, members: list[str]) -> list[list[Candidate]]:
    """The judged problems of each of a run's members, in the fewest objects: a run asks the same
    templated questions many times (25,581 distinct among 148,104 problems of a 100,000-sample run),
    and each distinct question is held once."""
    questions: dict[str, str] = {}
    return [
        [
            Candidate(f.proposal, f.outcome in KEPT, f.round, lane, f.proposer, f.index, f.image_hash,
                      questions.setdefault(f.question, f.question))
            for f in await ledger.fingerprinted_problems(member)
            if f.outcome is not None and f.outcome != "dropped"
        ]
        for lane, member in enumerate(members)
    ]


def _handed_over(lists: list[list[Candidate]]) -> Iterator[Candidate]:
    """The candidates, each let go by its list as it is given: the pass's own copy is then the only
    one, and it lets each go once walked."""
    for candidates in lists:
        while candidates:
            yield candidates.pop()  # in any order: the pass sorts them
