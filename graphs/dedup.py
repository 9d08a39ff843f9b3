"""The near-duplicate gate: no two samples of a run are the same problem.

Two judged problems are near-duplicates when their images AND their questions are close:
- images: perceptual hashes (imagehash's pHash, 16x16 = 256 bits) at most `image_distance` bits
  apart. The 8x8 default hash is too coarse for charts: two line charts of one template with other
  data were 4 bits of 64 apart, 44 of 256; a value moved by one stays within about 16 of 256;
- questions: the Jaccard similarity of their word pairs at least `question_similarity`. A
  datasketch MinHash of each question, indexed by MinHashLSH, finds the likely pairs without
  comparing every pair; each pair it finds is decided on the exact similarity (the estimate's
  error, about 0.04 at 128 permutations, is as large as the gap between a reworded question and a
  question about another bar of the same chart).
Both, because either alone is normal in a good data set: one chart asked several different
questions, or one templated question ("What is the area of the circle?") over different figures.
Word pairs rather than words, so that word order counts for something. A known limit: over one
image, "Is A taller than B?" and "Is B taller than A?" share most word pairs, so one of them goes.

Which one survives never depends on timing: one pass over the whole run (every round of every lane)
walks the judged problems in a fixed order — kept before discarded (a duplicate never costs the data
set a kept sample), then by round, lane, proposer and slot — and removes each problem that is a
near-duplicate of one that survived before it, recording which. The pass runs when the run stops
(`cadsynth.runner`; the graph itself for a run without lanes) and again whenever it is run again;
fingerprints are taken at each round's barrier, so the pass reads hashes, never images.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class Candidate:
    """A judged problem in the pass's order, with its fingerprints."""

    proposal: str
    kept: bool
    round: int
    lane: int
    proposer: str
    index: int
    image_hash: str
    question_minhash: Sequence[int]
    question: str

    @property
    def order(self) -> tuple[bool, int, int, str, int]:
        return (not self.kept, self.round, self.lane, self.proposer, self.index)


def near_duplicates(candidates: Iterable[Candidate], rule: NearDuplicatesConfig) -> list[Duplicate]:
    """The pass: walk in order, remove what duplicates an earlier survivor (the earliest such)."""
    import imagehash
    from datasketch import LeanMinHash, MinHash, MinHashLSH  # type: ignore[import-untyped]

    # LSH finds the questions likely above the threshold without comparing every pair; each
    # candidate it finds is then checked on both the estimated similarity and the images. Tuned
    # below the rule and against misses, a pair at the threshold escapes it with p < 1e-3.
    index = MinHashLSH(num_perm=NUM_PERM, params=_bands(rule.question_similarity))
    survivors: dict[str, tuple[int, set[str], imagehash.ImageHash]] = {}
    removed: list[Duplicate] = []
    for position, c in enumerate(sorted(candidates, key=lambda c: c.order)):
        signature = LeanMinHash(
            MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=MINHASH_SCHEME, hashvalues=list(c.question_minhash))
        )
        words, picture = question_shingles(c.question), imagehash.hex_to_hash(c.image_hash)
        matches = []
        for key in index.query(signature):
            earlier, their_words, their_picture = survivors[key]
            distance = int(picture - their_picture)
            similarity = jaccard(words, their_words)
            if distance <= rule.image_distance and similarity >= rule.question_similarity:
                matches.append((earlier, key, distance, similarity))
        if matches:
            _, of, distance, similarity = min(matches)
            removed.append(Duplicate(c.proposal, of, distance, round(similarity, 4)))
            continue
        survivors[c.proposal] = (position, words, picture)
        index.insert(c.proposal, signature)
    return removed


@functools.cache
def _bands(similarity: float) -> tuple[int, int]:
    """The LSH index's bands and rows for a rule, worked out once (datasketch integrates to find them)."""
    from datasketch import MinHashLSH  # type: ignore[import-untyped]

    index = MinHashLSH(threshold=max(0.05, similarity - 0.2), num_perm=NUM_PERM, weights=(0.1, 0.9))
    return index.b, index.r


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
        candidates: list[Candidate] = []
        for lane, member in enumerate(members):
            verdicts = {c.proposal: c for c in await ledger.consensus(member)}
            proposals = {p.id: p for p in await ledger.proposals(member)}
            for f in await ledger.fingerprints(member):
                p, verdict = proposals.get(f.proposal), verdicts.get(f.proposal)
                if p is None or verdict is None or verdict.outcome == "dropped":
                    continue
                candidates.append(
                    Candidate(
                        p.id, verdict.outcome in KEPT, p.round, lane, p.proposer, p.index, f.image_hash, f.question_minhash,
                        p.question,
                    )
                )
        removed = near_duplicates(candidates, rule)
    await ledger.put_duplicates(run, removed)
    return removed
