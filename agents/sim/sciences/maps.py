"""Geography in the simulated world: places on a kilometre grid; distances from whole-number
triangles, bearings on the eight compass points, travel times at round speeds."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from cadsynth.agents.sim.sciences import FAILURES
from cadsynth.agents.sim.world import CITIES, DESCRIBERS, Draft, _choice, _count, _num_kind, _nums, _template, _texts
from cadsynth.specs import ImageSpec, Place, Road, SchematicMap, fmt_number


COMPASS = ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]  # every 45 degrees counter-clockwise from east
# Grid steps (in cells) with whole-number lengths: 3-4-5 and 6-8-10 triangles, and straight lines.
STEPS = [(3, 4), (4, 3), (-3, 4), (4, -3), (6, 8), (8, 6), (0, 5), (5, 0), (0, 3), (4, 0), (-6, 8), (8, -6)]
SPEEDS = (10, 20, 30, 40, 60)


@dataclass
class _Map:
    spec: SchematicMap
    cells: dict[str, tuple[int, int]]  # place -> grid cell (x, y)
    step: float  # km per grid cell
    load: float


def _free(cols: int, rows: int, x: int, y: int) -> bool:
    # Inside the map, off its edges, and clear of the north arrow in the top-right corner.
    return 0 < x < cols and 0 < y < rows and not (x >= cols - 2 and y >= rows - 2)


def _map(rng: random.Random, level: float, pair: tuple[int, int] | None = None, extra: int | None = None) -> _Map:
    cols, rows = 11, 10
    step = rng.choice((1.0, 2.0, 5.0, 10.0))
    n, load = _count(rng, level, 3, 7)
    n = extra if extra is not None else n
    names = rng.sample(CITIES, n + (2 if pair else 0))
    cells: dict[str, tuple[int, int]] = {}
    taken: set[tuple[int, int]] = set()
    if pair:
        dx, dy = pair
        while True:
            x, y = rng.randint(1, cols - 1), rng.randint(1, rows - 1)
            if _free(cols, rows, x, y) and _free(cols, rows, x + dx, y + dy):
                break
        cells[names[0]], cells[names[1]] = (x, y), (x + dx, y + dy)
        taken |= {(x, y), (x + dx, y + dy)}
    for name in names[len(cells):]:
        while True:
            x, y = rng.randint(1, cols - 1), rng.randint(1, rows - 1)
            # A cell apart from every other place: names never touch.
            if _free(cols, rows, x, y) and all(abs(x - a) + abs(y - b) > 1 for a, b in taken):
                break
        cells[name] = (x, y)
        taken.add((x, y))
    places = [Place(name=nm, x=x * step, y=y * step) for nm, (x, y) in cells.items()]
    spec = SchematicMap(
        title="Map of the region", width_km=cols * step, height_km=rows * step, grid_km=step,
        scale_km=2 * step, places=places,
    )
    return _Map(spec, cells, step, load)


def distance(a: Place, b: Place) -> float:
    return math.hypot(b.x - a.x, b.y - a.y)


def bearing(a: Place, b: Place) -> str:
    """The compass point from a to b (to the nearest 45 degrees)."""
    angle = math.degrees(math.atan2(b.y - a.y, b.x - a.x)) % 360
    return COMPASS[round(angle / 45) % 8]


def _place(m: _Map, name: str) -> Place:
    return next(p for p in m.spec.places if p.name == name)


@_template("map.distance", "map", "difference", ("spatial_relationship", "numeric_reasoning"), 0.2, inverse=("map.which_distance",))
def _map_distance(rng: random.Random, level: float) -> Draft:
    m = _map(rng, level, pair=rng.choice(STEPS))
    a, b = m.spec.places[0], m.spec.places[1]
    d = distance(a, b)
    dx, dy = abs(b.x - a.x), abs(b.y - a.y)
    return Draft(
        m.spec, f"How far is it in a straight line from {a.name} to {b.name}, in km?", _num_kind(d), fmt_number(d),
        _nums(d, [dx + dy, max(dx, dy), d / m.step], m.step),
        f"{b.name} is {fmt_number(dx)} km across and {fmt_number(dy)} km up or down from {a.name} (grid lines every "
        f"{fmt_number(m.step)} km); sqrt({fmt_number(dx)}^2 + {fmt_number(dy)}^2) = {fmt_number(d)} km.",
        m.load, steps=2,
    )


@_template("map.bearing", "map", "relation", ("spatial_relationship",), 0.08, inverse=("map.which_distance",))
def _map_bearing(rng: random.Random, level: float) -> Draft:
    k = rng.randint(2, 3)
    direction = rng.choice([(k, 0), (k, k), (0, k), (-k, k), (-k, 0), (-k, -k), (0, -k), (k, -k)])
    m = _map(rng, level, pair=direction)
    a, b = m.spec.places[0], m.spec.places[1]
    truth = bearing(a, b)
    i = COMPASS.index(truth)
    return Draft(
        m.spec, f"In which compass direction is {b.name} from {a.name}? Answer with N, NE, E, SE, S, SW, W or NW.",
        "text", truth, _texts(truth, [COMPASS[(i + 1) % 8], COMPASS[(i - 1) % 8], COMPASS[(i + 4) % 8]]),
        f"North is up (the arrow); {b.name} lies {truth} of {a.name}.", m.load,
    )


@_template("map.nearest", "map", "argmax", ("spatial_relationship", "spatial_recognition"), 0.12, inverse=("map.which_distance",))
def _map_nearest(rng: random.Random, level: float) -> Draft:
    while True:
        m = _map(rng, level, extra=_count(rng, level, 5, 8)[0])
        a = m.spec.places[0]
        order = sorted(m.spec.places[1:], key=lambda p: distance(a, p))
        if distance(a, order[1]) > 1.25 * distance(a, order[0]):
            break
    choices, letter, others = _choice(rng, order[0].name, [p.name for p in order[1:4]])
    return Draft(
        m.spec, f"Which place is closest to {a.name} in a straight line?", "choice", letter, others,
        f"Measured on the grid, {order[0].name} is {fmt_number(distance(a, order[0]))} km from {a.name}, nearer than "
        f"{order[1].name} ({fmt_number(distance(a, order[1]))} km); option {letter}.",
        m.load, choices=choices,
    )


@_template("map.which_distance", "map", "reverse_lookup", ("spatial_relationship", "numeric_reasoning"), 0.25, inverse=("map.distance",), reverse=True)
def _map_which_distance(rng: random.Random, level: float) -> Draft:
    while True:
        m = _map(rng, level, pair=rng.choice(STEPS), extra=max(3, _count(rng, level, 3, 6)[0]))
        a, b = m.spec.places[0], m.spec.places[1]
        d = distance(a, b)
        rest = [p for p in m.spec.places[1:] if p is not b]
        if len(rest) >= 3 and all(abs(distance(a, p) - d) > 0.5 * m.step for p in rest):
            break
    rest.sort(key=lambda p: abs(distance(a, p) - d))
    choices, letter, others = _choice(rng, b.name, [p.name for p in rest[:3]])
    return Draft(
        m.spec, f"Which place is exactly {fmt_number(d)} km from {a.name} in a straight line?", "choice", letter, others,
        f"Measuring from {a.name} on the {fmt_number(m.step)} km grid, {b.name} is {fmt_number(d)} km away (option {letter}).",
        m.load, steps=2, choices=choices,
    )


@_template("map.travel_time", "map", "scale", ("spatial_relationship", "numeric_reasoning", "text_recognition"), 0.3, inverse=("map.distance",))
def _map_travel_time(rng: random.Random, level: float) -> Draft:
    m = _map(rng, level, pair=rng.choice(STEPS))
    a, b = m.spec.places[0], m.spec.places[1]
    spec = m.spec.model_copy(update={"roads": [Road(start=a.name, end=b.name)]})
    d = distance(a, b)
    speed = rng.choice(SPEEDS)
    minutes = d / speed * 60
    return Draft(
        spec, f"A bus drives the straight road from {a.name} to {b.name} at {speed} km/h. How many minutes does the trip take?",
        _num_kind(minutes), fmt_number(minutes), _nums(minutes, [d / speed, minutes * 2, minutes / 2]),
        f"The road is {fmt_number(d)} km long (from the grid); {fmt_number(d)} / {speed} h = {fmt_number(minutes)} minutes.",
        m.load, _num_kind(minutes) == "number", 3,
    )


def _describe_map(spec: SchematicMap, canvas: str) -> str:
    places = "; ".join(f"{p.name} at ({fmt_number(p.x)} km east, {fmt_number(p.y)} km north)" for p in spec.places)
    roads = "; ".join(f"{r.start} to {r.end}" for r in spec.roads)
    return (
        f"A north-up schematic map on {canvas}: {fmt_number(spec.width_km)} x {fmt_number(spec.height_km)} km of pale land, "
        f"grid lines every {fmt_number(spec.grid_km)} km labelled along the left and bottom edges, a "
        f"{fmt_number(spec.scale_km)} km scale bar under the map and a north arrow at the top right. Places as red dots "
        f"with their names: {places}.{' Straight roads: ' + roads + '.' if roads else ''}"
    )


def _break_map(rng: random.Random, spec: SchematicMap, question: str) -> tuple[ImageSpec, str] | None:
    data = spec.model_dump(mode="json")
    named = [p for p in data["places"] if re.search(rf"\b{re.escape(p['name'])}\b", question)]
    if not named:
        return None
    place = rng.choice(named)
    if rng.random() < 0.5:
        used = {p["name"] for p in data["places"]}
        decoy = next((c for c in CITIES if c not in used and c not in question), None)
        if decoy is None:
            return None
        for road in data["roads"]:
            for end in ("start", "end"):
                if road[end] == place["name"]:
                    road[end] = decoy
        place["name"] = decoy
        how = "missing_label"
    else:
        # Drawn a grid cell off: the distances and bearings the question asks about change.
        place["x"] = place["x"] + spec.grid_km if place["x"] + spec.grid_km < spec.width_km else place["x"] - spec.grid_km
        how = "changed_value"
    try:
        return SchematicMap.model_validate(data), how
    except ValueError:
        return None


DESCRIBERS["map"] = _describe_map  # type: ignore[assignment]
FAILURES["map"] = _break_map
