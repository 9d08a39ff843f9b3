"""How the shared context steers a proposal: its meta-strategy, capabilities and seed.

Drawn per task from the run's seed, so a proposal's plan does not depend on scheduling.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cadsynth.agents.panel import SeedView
from cadsynth.rng import rng_for, weighted_choice, weighted_sample
from cadsynth.config import RunConfig
from cadsynth.domain import CAPABILITIES, STRATEGIES, Capability, Context, Strategy

# Where the context's strategy weights start: the meta-strategies alike; MMEvol's operators in its
# own proportions (perception 0.5, reasoning 0.25, interaction 0.25), perception as one strategy.
INITIAL_STRATEGY_WEIGHTS: dict[str, float] = {
    "numerical_variation": 1.0,
    "logic_reversion": 1.0,
    "auxiliary_extension": 1.0,
    "isomorphic_transfer": 1.0,
    "fine_grained_perception": 1.0,
    "cognitive_reasoning": 0.5,
    "interaction": 0.5,
}
from cadsynth.seeds import Seed, load_seeds, world_seed


@dataclass(frozen=True)
class Plan:
    strategy: Strategy
    capabilities: list[Capability]
    seed: SeedView


def initial_context() -> Context:
    return Context(
        version=0,
        guidance="Evolve the seed into a problem that needs careful reading of the image.",
        capability_weights={c: 1.0 for c in CAPABILITIES},
        strategy_weights={s: INITIAL_STRATEGY_WEIGHTS[s] for s in STRATEGIES},
        difficulty_target=0.3,
    )


@cache
def _seed_file(path: str) -> tuple[Seed, ...]:
    return tuple(load_seeds(Path(path)))


async def _seed_view(config: RunConfig, key: str, with_image: bool) -> SeedView:
    if config.seeds is not None:
        # Keyed by the file it names from here: a relative path ("seeds.jsonl" beside a config
        # given as `cads run panel.yaml`) names another file in a process that runs in another folder.
        seeds = _seed_file(str(config.seeds.absolute()))
        if config.lane is not None:  # a lane draws from its own share, when there are seeds enough
            seeds = seeds[config.lane :: config.lanes] or seeds
        seed = seeds[rng_for(config.seed, "pick-seed", key).randrange(len(seeds))]
        if seed.task:
            return SeedView(id=seed.id, text=f"Task: {seed.task}")
        assert seed.image is not None
        text = f"Seed problem: {seed.question}\nIts answer: {seed.answer}\n(The seed's image is attached.)"
        return SeedView(id=seed.id, text=text, image=await asyncio.to_thread(seed.image.read_bytes) if with_image else None)
    # No seed file: the procedural world supplies a seed, made again from its key wherever needed.
    text, spec = world_seed(config.seed, key)
    image = None
    if with_image:
        from cadsynth.agents.painter.workers import render_async

        image = await render_async(spec)
    return SeedView(id=f"world:{key}", text=text, image=image)


async def plan_proposal(config: RunConfig, context: Context, key: str, *, with_image: bool) -> Plan:
    rng = rng_for(config.seed, "plan", key)
    strategy = weighted_choice(rng, STRATEGIES, context.strategy_weights)
    t = context.difficulty_target
    # Harder targets compose more capabilities (COMPACT's k in 1..3).
    k = rng.choices([1, 2, 3], weights=[max(0.05, 1.1 - t), 0.6, 0.15 + t])[0]
    capabilities = weighted_sample(rng, CAPABILITIES, context.capability_weights, k)
    return Plan(strategy, capabilities, await _seed_view(config, key, with_image))
