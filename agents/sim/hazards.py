"""The harder world's failure modes: what goes wrong in real synthesized data, at configured rates.

- text-answerable: the question restates the image's data, so it needs no image;
- conflict: the drawn image lacks or contradicts what the question refers to (a missing label, a
  changed value, a legend that pairs the wrong names);
- near-duplicate: proposers converge on a popular problem (same template and parameters, near
  identical wording and image), within a round, across rounds and across lanes;
- blind spot: on some templates the models share one mistake, so a wrong reference that is that
  mistake can win the judges' agreement.

Each is recorded in the simulator's truth (agents.sim.truth), which only the simulated agents and stats read. The
draws are keyed by the world's seed (not a lane's), so lanes share popular problems and blind spots.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from typing import Any

from cadsynth.specs import ImageSpec
from cadsynth.rng import rng_for
from cadsynth.agents.sim.world import CITIES, FAILURES, FRUITS, MONTHS, NAMED, NAMES, PRODUCTS, SHAPE_NAMES, TEAMS, Problem, World, describe
from cadsynth.config import WorldConfig

# Spec fields a question names things by; titles and axis captions are not what it asks about.
_NAMING = ("label", "name", "x_labels", "columns", "rows", "color", "shape", "side_labels", "angle_labels")
_WORDS = [*FRUITS, *CITIES, *NAMES, *PRODUCTS, *TEAMS, *MONTHS]
POPULAR = 6  # the problems proposers tend to converge on, whatever they were asked for
_PREFIXES = ("", "", "Look closely: ")  # the wording drifts a little between proposers


class Hazards:
    def __init__(self, config: WorldConfig, world: World):
        self.config = config
        self.world = world

    def blind_spot(self, problem: Problem) -> str | None:
        """The mistake every model tends to make on this problem's template, if it has one."""
        if not problem.distractors:
            return None
        shared = rng_for(self.config.seed, "blind-spot", problem.template).random() < self.config.blind_spot_share
        return problem.distractors[0] if shared else None

    def converge(self, rng: random.Random, problem: Problem) -> tuple[Problem, str] | None:
        """With duplicate_rate, one of the world's few popular problems instead (models share their
        clichés): the same spec and question up to a wording prefix and the title's punctuation, so
        near, not exact, duplicates."""
        if rng.random() >= self.config.duplicate_rate:
            return None
        k = rng.randrange(POPULAR)
        popular = self.world.seed(rng_for(self.config.seed, "popular", k))
        title = popular.spec.title
        if title:  # a title worded a little differently: near-identical pixels, same content
            title = rng.choice((title, title + ".", title.replace(" ", "  ", 1)))
        spec = popular.spec.model_copy(update={"title": title})
        question = rng.choice(_PREFIXES) + popular.question
        return replace(popular, spec=spec, question=question, visual_prompt=describe(spec)), f"popular#{k}"

    def give_away(self, rng: random.Random, problem: Problem) -> Problem | None:
        """With text_answerable_rate, the question restates the data it asks about."""
        if rng.random() >= self.config.text_answerable_rate:
            return None
        return replace(problem, question=f"{problem.question} (For reference: {describe(problem.spec)})")

    def conflict(self, rng: random.Random, problem: Problem) -> tuple[Problem, str] | None:
        """With conflict_rate, the image as drawn contradicts the question; the reference and the
        solution stay those of the intended image. None when this spec offers no such change."""
        if rng.random() >= self.config.conflict_rate:
            return None
        changed = _break(rng, problem.spec, problem.question)
        if changed is None:
            return None
        spec, how = changed
        return replace(problem, spec=spec, visual_prompt=describe(spec)), how


def _named(question: str, value: str) -> bool:
    return len(value) >= 2 and re.search(rf"(?<!\w){re.escape(value)}s?(?!\w)", question, re.IGNORECASE) is not None


def _leaves(node: Any, path: tuple[Any, ...] = (), naming: bool = False):  # type: ignore[no-untyped-def]
    """(path, value) of every string a question could name the image's contents by."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k), naming or k in _NAMING)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i), naming)
    elif isinstance(node, str) and naming:
        yield path, node


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _decoy(rng: random.Random, path: tuple[Any, ...], used: str) -> str:
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    pool = NAMED if key == "color" else SHAPE_NAMES if key == "shape" else _WORDS
    free = [w for w in pool if w.lower() not in used]
    return rng.choice(free) if free else "Other"


def _break(rng: random.Random, spec: ImageSpec, question: str) -> tuple[ImageSpec, str] | None:
    if spec.kind in FAILURES:  # a kind with failure modes of its own (agents.sim.sciences, .documents)
        return FAILURES[spec.kind](rng, spec, question)
    data = spec.model_dump(mode="json")
    used = (json.dumps(data) + " " + question).lower()
    named = [(path, value) for path, value in _leaves(data) if _named(question, value)]
    numbers = [(path, value) for path, value in _leaves(data) if re.search(r"\d", value) and path[0] in ("side_labels", "angle_labels")]
    if named:
        path, value = rng.choice(named)
        peers = [(p, v) for p, v in _leaves(data) if p[:-2] == path[:-2] and p[-1] == path[-1] and v != value]
        if path[0] in ("series", "slices") and path[-1] in ("name", "label") and peers:
            # The legend pairs the named line or slice with another's colour and values.
            other_path, other = rng.choice(peers)
            _set(data, path, other)
            _set(data, other_path, value)
            how = "legend_mismatch"
        else:
            decoy = _decoy(rng, path, used)
            for p, v in list(_leaves(data)):  # every mention, so the named thing is gone from the image
                if v == value:
                    _set(data, p, decoy)
            how = "missing_label"
    elif numbers:
        path, value = rng.choice(numbers)
        _set(data, path, re.sub(r"\d+(\.\d+)?", lambda m: str(int(float(m.group()) * 1.5) + 1), value, count=1))
        how = "changed_value"
    elif any(item.get("label") for item in data.get("shapes", [])):
        for item in data["shapes"]:  # the labels the question reads are missing from the image
            item["label"] = None
        how = "missing_label"
    elif any(key in data for key in ("bars", "slices", "series")):
        # The values drawn are not those the reference was computed from: reversed and scaled, so
        # lookups, orders and counts above a threshold all change.
        items = data.get("bars") or data.get("slices") or []
        values = [it["value"] for it in items][::-1]
        for it, v in zip(items, values):
            it["value"] = round(v * 1.3 + 1, 1)
        for series in data.get("series", []):
            series["values"] = [round(v * 1.3 + 1, 1) for v in series["values"][::-1]]
        how = "changed_value"
    else:
        return None
    try:
        return type(spec).model_validate(data), how
    except ValueError:
        return None
