"""The simulated world's science domains: molecules, circuits, function plots, Punnett squares and
maps. Each module holds one kind's problems (truths computed from the spec), the text that
describes its image to a painter model, and its failure modes (what a drawn image gets wrong).

Templates register with the world's catalogue (`world._template`) when the world is imported.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from cadsynth.specs import ImageSpec

# What each kind's drawn image can get wrong: (rng, spec, question) -> (the spec as drawn, how) or
# None when the spec offers no such change. agents.sim.hazards asks here first.
FAILURES: dict[str, Callable[[random.Random, Any, str], tuple[ImageSpec, str] | None]] = {}

from cadsynth.agents.sim.sciences import chemistry, circuits, genetics, maps, plots  # noqa: E402  (they fill FAILURES)

__all__ = ["FAILURES", "chemistry", "circuits", "genetics", "maps", "plots"]
