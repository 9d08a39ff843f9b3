"""The simulated world's science domains: molecules, circuits, function plots, Punnett squares and
maps. Each module holds one kind's problems (truths computed from the spec), the text that
describes its image to a painter model, and its failure modes (what a drawn image gets wrong).

Templates register with the world's catalogue (`world._template`) when the world is imported.
"""

from __future__ import annotations

import random

from cadsynth.agents.sim.world import FAILURES  # each kind's module fills it, as it does DESCRIBERS


def titled(rng: random.Random, *titles: str) -> str:
    """One of a few wordings of a title: problems whose content recurs (one molecule, one cross, one
    parabola) still get images of their own, as the simulator keeps one truth per question and image
    (agents.sim.truth), whatever each proposer meant by it."""
    return rng.choice(titles)


def ordered_choice(correct: str, wrong: list[str]) -> tuple[list[str], str, list[str]]:
    """Four options in sorted order; returns (options, letter of correct, letters of the wrong ones).
    Where one image and one question recur (a catalogue molecule, a common cross), shuffled options
    would make one problem with two true letters: sorted, its answer is always the same letter."""
    options = sorted([correct, *wrong[:3]])
    letters = "ABCD"
    return options, letters[options.index(correct)], [letters[options.index(w)] for w in wrong[:3]]


from cadsynth.agents.sim.sciences import chemistry, circuits, genetics, maps, plots  # noqa: E402  (they fill FAILURES)

__all__ = ["FAILURES", "chemistry", "circuits", "genetics", "maps", "plots"]
