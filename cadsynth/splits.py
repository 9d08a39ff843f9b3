"""Train, validation and test splits with no leakage between them: `--split train=0.9,val=0.05,test=0.05`.

Samples are split as whole groups, never one by one. A group holds every sample tied to another by
- the near-duplicate gate's rule (`graphs.dedup`: pHashes and questions both close), with the
  run's own thresholds, whether or not the gate ran: a test question is never a near twin of a
  training one;
- one image (the same blob), or one seed (a seed family: problems grown from the same seed).
Groups are shuffled by a generator derived from the seed alone (`cadsynth.rng`), then each goes to
the split furthest below its share, so the same samples and seed give the same splits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from cadsynth.config import NearDuplicatesConfig
from cadsynth.graphs.dedup import near_pairs
from cadsynth.rng import rng_for
from cadsynth.samples import Sample

NAMES = ("train", "val", "test")  # the splits trainers take, in the order they are written


class SplitError(ValueError):
    """A --split that cannot be used; str() is one line that names the value and the fix."""


def parse(spec: str) -> dict[str, float]:
    """`train=0.9,val=0.05,test=0.05` as {name: fraction}, in NAMES order."""
    shares: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not name:
            raise SplitError(f"--split {spec!r}: {part.strip()!r} is not NAME=FRACTION; write e.g. train=0.9,val=0.05,test=0.05")
        if name not in NAMES:
            raise SplitError(f"--split {spec!r}: no split {name!r}; use {', '.join(NAMES)}")
        if name in shares:
            raise SplitError(f"--split {spec!r}: {name} is given twice; give each split once")
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if not (0 < share <= 1):
            raise SplitError(f"--split {spec!r}: {name}={value} is not a fraction above 0 and at most 1")
        shares[name] = share
    if "train" not in shares:
        raise SplitError(f"--split {spec!r}: no train split; a trainer needs one, e.g. train=0.9,test=0.1")
    if not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise SplitError(f"--split {spec!r}: the fractions add up to {sum(shares.values()):g}, not 1")
    return {name: shares[name] for name in NAMES if name in shares}


@dataclass(frozen=True)
class Split:
    """Which split each sample is in, and what the card says of it."""

    shares: dict[str, float]
    seed: int
    of: dict[str, str]  # sample id -> split name
    groups: int  # groups of samples kept together
    largest: int  # samples in the largest group: no split can be smaller than it, bar empty ones
    twins: int  # pairs of near twins among the samples, by the gate's rule
    across: int  # of them, pairs in two splits (kept at 0: the check the card reports)
    rule: NearDuplicatesConfig

    def sizes(self) -> dict[str, int]:
        counts = {name: 0 for name in self.shares}
        for name in self.of.values():
            counts[name] += 1
        return counts


def split(chosen: list[Sample], picture: Callable[[str], str], shares: dict[str, float], seed: int,
          rule: NearDuplicatesConfig) -> Split:
    """Split `chosen`; `picture(image ref)` is the image's pHash (hex), as `graphs.dedup.image_hash` takes it."""
    parent = list(range(len(chosen)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[root(i)] = root(j)

    pictured = [i for i, s in enumerate(chosen) if s.image]
    hashes = {ref: picture(ref) for ref in {chosen[i].image for i in pictured} if ref}
    twins = [(pictured[a], pictured[b]) for a, b in near_pairs(
        [(hashes[chosen[i].image or ""], chosen[i].proposal.question) for i in pictured], rule)]
    for i, j in twins:
        join(i, j)
    first: dict[tuple[str, str], int] = {}
    for i, s in enumerate(chosen):
        for key in (("image", s.image), ("seed", s.proposal.seed_id)):
            if key[1]:
                join(i, first.setdefault((key[0], key[1]), i))

    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(chosen)):
        members[root(i)].append(i)
    groups = sorted((sorted(chosen[i].id for i in group) for group in members.values()), key=lambda ids: ids[0])
    rng_for(seed, "split").shuffle(groups)
    targets = {name: share * len(chosen) for name, share in shares.items()}
    filled = {name: 0 for name in shares}
    of: dict[str, str] = {}
    for ids in groups:
        name = max(shares, key=lambda n: targets[n] - filled[n])  # ties: the first in NAMES order
        filled[name] += len(ids)
        of.update((i, name) for i in ids)
    across = sum(of[chosen[i].id] != of[chosen[j].id] for i, j in twins)
    return Split(shares, seed, of, len(groups), max(map(len, groups), default=0), len(twins), across, rule)
