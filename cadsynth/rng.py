"""Deterministic randomness: one generator per (seed, task), never per call order (the planner and the simulator).

Tasks of one phase run concurrently, so drawing from a shared generator would make results depend
on scheduling. Deriving each task's generator from its key keeps a run reproducible.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def rng_for(seed: int, *parts: object) -> random.Random:
    key = "\x1f".join([str(seed), *map(str, parts)]).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def weighted_choice(rng: random.Random, options: Sequence[T], weights: Mapping[str, float]) -> T:
    """Pick one option, weighting each by weights[str(option)] (missing names weigh 1)."""
    ws = [max(0.0, float(weights.get(str(option), 1.0))) for option in options]
    if sum(ws) <= 0:
        ws = [1.0] * len(options)
    return rng.choices(list(options), weights=ws, k=1)[0]


def weighted_sample(rng: random.Random, options: Sequence[T], weights: Mapping[str, float], k: int) -> list[T]:
    """k distinct options, drawn one at a time without replacement."""
    pool = list(options)
    picked: list[T] = []
    for _ in range(min(k, len(pool))):
        choice = weighted_choice(rng, pool, weights)
        picked.append(choice)
        pool.remove(choice)
    return picked


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
