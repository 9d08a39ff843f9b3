"""The science domains' image kinds: molecule, circuit, function_plot, punnett_square, map.

Each template's truth is recomputed here another way (reference tables of the molecules, nodal
analysis of the circuit, the polynomial's coefficients, Mendel's rule per gene, coordinates), and
what is drawn is checked against the spec where pixels or the drawing's labels can show it. Bad
specs are refused with a one-line SpecError naming the field; rendering is the same bytes in
another process; the simulated world draws every kind, failure modes included; and a real-provider
run over the fake OpenAI server gets every kind painted.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from PIL import Image

from cadsynth.agents.painter import circuits, genetics, plots
from cadsynth.agents.painter.render import render, spec_digest, spec_stamp
from cadsynth.agents.sim.sciences import FAILURES
from cadsynth.agents.sim.sciences.chemistry import molecule_facts
from cadsynth.agents.sim.world import LETTERS, TEMPLATES, Problem, World
from cadsynth.expr import ExpressionError, evaluate, parse
from cadsynth.specs import Circuit, Curve, FunctionPlot, Molecule, PunnettSquare, SchematicMap, SpecError, parse_spec
from tests.helpers import cads, records

KINDS = ("molecule", "circuit", "function_plot", "punnett_square", "map")
WORLD = World()
LEVELS = (0.0, 0.3, 0.6, 1.0)
SCIENCE = sorted(t for t in TEMPLATES if TEMPLATES[t].kind in KINDS)


def grab(pattern: str, text: str) -> tuple[str, ...]:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return m.groups()


def picked(p: Problem, value: str) -> str:
    """The letter of the option that is `value` (exactly one must be)."""
    assert p.choices is not None and p.choices.count(value) == 1, (value, p.choices)
    return LETTERS[p.choices.index(value)]


def number(x: float) -> str:
    r = round(x, 2)
    return str(int(r)) if r == int(r) else f"{r:.2f}".rstrip("0").rstrip(".")


# --- independent truths ------------------------------------------------------------------------

# name: (formula, rings, double bonds in the Kekulé structure), from chemistry references.
REFERENCE = {
    "ethanol": ("C2H6O", 0, 0), "acetic acid": ("C2H4O2", 0, 1), "acetone": ("C3H6O", 0, 1), "urea": ("CH4N2O", 0, 1),
    "glycine": ("C2H5NO2", 0, 1), "alanine": ("C3H7NO2", 0, 1), "lactic acid": ("C3H6O3", 0, 1),
    "benzene": ("C6H6", 1, 3), "pyridine": ("C5H5N", 1, 3), "cyclohexane": ("C6H12", 1, 0), "toluene": ("C7H8", 1, 3),
    "phenol": ("C6H6O", 1, 3), "styrene": ("C8H8", 1, 4), "benzoic acid": ("C7H6O2", 1, 4), "indole": ("C8H7N", 2, 4),
    "naphthalene": ("C10H8", 2, 5), "glucose": ("C6H12O6", 1, 0), "dopamine": ("C8H11NO2", 1, 3),
    "vanillin": ("C8H8O3", 1, 4), "paracetamol": ("C8H9NO2", 1, 4), "adrenaline": ("C9H13NO3", 1, 3),
    "menthol": ("C10H20O", 1, 0), "nicotine": ("C10H14N2", 2, 3), "serotonin": ("C10H12N2O", 2, 4),
    "aspirin": ("C9H8O4", 1, 5), "caffeine": ("C8H10N4O2", 2, 4), "ibuprofen": ("C13H18O2", 1, 4),
}
ELEMENTS = {"carbon": "C", "hydrogen": "H", "nitrogen": "N", "oxygen": "O", "sulfur": "S", "chlorine": "Cl"}


def atoms(formula: str) -> dict[str, int]:
    return {e: int(n or 1) for e, n in re.findall(r"([A-Z][a-z]?)(\d*)", formula)}


def chem_check(p: Problem) -> str:
    spec = p.spec
    assert isinstance(spec, Molecule)
    formula, rings, doubles = REFERENCE[spec.name.lower()]
    count = atoms(formula)
    t, q = p.template, p.question
    if t == "chem.count_element":
        return str(count.get(ELEMENTS[grab(r"How many (\w+) atoms", q)[0]], 0))
    if t == "chem.which_count":
        n = int(grab(r"exactly (\d+) atom", q)[0])
        hits = [c for c in p.choices or [] if count.get(ELEMENTS[c], 0) == n and c != "hydrogen"]
        assert len(hits) == 1
        return picked(p, hits[0])
    if t == "chem.rings":
        return str(rings)
    if t == "chem.double_bonds":
        return str(doubles)
    if t == "chem.hydrogens":
        return str(count["H"])
    if t == "chem.formula":
        return picked(p, formula)
    raise AssertionError(t)


def nodal(spec: Circuit) -> tuple[float, dict[str, float]]:
    """The battery current and each resistor's current, by nodal analysis (Kirchhoff's current law
    at every node, solved as one linear system): no series or parallel rule used."""
    edges: list[tuple[int, int, str, float]] = []  # node a, node b, resistor, ohms
    nodes = len(spec.stages) + 1  # the junctions between stages; 0 is the battery's + side
    for k, stage in enumerate(spec.stages):
        for branch in stage.branches:
            at = k
            for i, r in enumerate(branch.resistors):
                to = k + 1 if i == len(branch.resistors) - 1 else nodes
                if to == nodes:
                    nodes += 1
                edges.append((at, to, r.name, r.ohms))
                at = to
    last = len(spec.stages)
    g = np.zeros((nodes, nodes))
    for a, b, _, ohms in edges:
        g[a, a] += 1 / ohms
        g[b, b] += 1 / ohms
        g[a, b] -= 1 / ohms
        g[b, a] -= 1 / ohms
    fixed = {0: spec.volts, last: 0.0}
    free = [n for n in range(nodes) if n not in fixed]
    v = np.zeros(nodes)
    for n, value in fixed.items():
        v[n] = value
    if free:
        rhs = -g[np.ix_(free, list(fixed))] @ np.array(list(fixed.values()))
        v[free] = np.linalg.solve(g[np.ix_(free, free)], rhs)
    currents = {name: (v[a] - v[b]) / ohms for a, b, name, ohms in edges}
    total = sum(currents[name] for a, _, name, _ in edges if a == 0)
    return total, currents


def circuit_check(p: Problem) -> str:
    spec = p.spec
    assert isinstance(spec, Circuit)
    total, currents = nodal(spec)
    t = p.template
    if t == "circuit.resistance":
        return number(spec.volts / total)
    if t == "circuit.current":
        return number(total)
    if t == "circuit.voltage":
        assert not spec.show_volts  # the answer is not printed in the image
        i = float(grab(r"A current of ([\d.]+) A", p.question)[0])
        return number(i * spec.volts / total)
    if t == "circuit.branch_current":
        return number(currents[grab(r"through (R\d+)\?", p.question)[0]])
    raise AssertionError(t)


def coefficients(expr: str) -> tuple[float, float, float]:
    """a, b, c of a polynomial written like 'x^2 - 2*x + 3' (the world's form)."""
    a = b = c = 0.0
    for sign, coef, var in re.findall(r"([+-]?)\s*([\d.]*)\*?(x\^2|x)?", expr.replace(" ", "")):
        if not coef and not var:
            continue
        value = (-1 if sign == "-" else 1) * (float(coef) if coef else 1.0)
        if var == "x^2":
            a += value
        elif var == "x":
            b += value
        else:
            c += value
    return a, b, c


def real_roots(a: float, b: float, c: float) -> list[float]:
    if abs(a) < 1e-12:
        return [] if abs(b) < 1e-12 else [-c / b]
    d = b * b - 4 * a * c
    if d < -1e-9:
        return []
    d = math.sqrt(max(0.0, d))
    return sorted({(-b - d) / (2 * a), (-b + d) / (2 * a)})


def plot_check(p: Problem) -> str:
    spec = p.spec
    assert isinstance(spec, FunctionPlot)
    polys = {c.label: coefficients(c.expr) for c in spec.curves}
    xs = np.linspace(spec.x_min, spec.x_max, 101)
    for c in spec.curves:  # the parser reads the text as the coefficients say
        a, b, k = polys[c.label]
        assert np.allclose(evaluate(parse(c.expr), xs), a * xs**2 + b * xs + k)
    t, q = p.template, p.question
    if t == "plot.extremum":
        a, b, c = polys["f"]
        h = -b / (2 * a)
        return number(h if "At what value of x" in q else c - b * b / (4 * a))
    if t == "plot.which_curve":
        x = int(grab(r"lowest point at x = (-?\d+)", q)[0])
        hits = [name for name, (a, b, _) in polys.items() if abs(-b / (2 * a) - x) < 1e-9]
        assert len(hits) == 1
        return picked(p, hits[0])
    f, g = polys["f"], polys.get("g", (0.0, 0.0, 0.0))
    diff = (f[0] - g[0], f[1] - g[1], f[2] - g[2])
    inside = [r for r in real_roots(*diff) if spec.x_min < r < spec.x_max]
    if t == "plot.crossings":
        return str(len(inside))
    if t == "plot.intersection":
        return number(max(inside) if "larger" in q else min(inside))
    if t == "plot.root_sum":
        return number(sum(real_roots(*f)))
    raise AssertionError(t)


def mendel(spec: PunnettSquare) -> dict[str, Fraction]:
    """Each offspring genotype's probability, gene by gene (independent assortment): no square."""
    per_gene = []
    for i in range(0, len(spec.parent1), 2):
        outcomes: Counter[str] = Counter()
        for x in spec.parent1[i : i + 2]:
            for y in spec.parent2[i : i + 2]:
                outcomes["".join(sorted(x + y, key=lambda ch: (ch.islower(), ch)))] += 1
        per_gene.append({g: Fraction(n, 4) for g, n in outcomes.items()})
    out: dict[str, Fraction] = {"": Fraction(1)}
    for gene in per_gene:
        out = {k + g: pk * pg for k, pk in out.items() for g, pg in gene.items()}
    return out


def punnett_check(p: Problem) -> str:
    spec = p.spec
    assert isinstance(spec, PunnettSquare)
    odds = mendel(spec)
    cells = 4 ** (len(spec.parent1) // 2)
    t, q = p.template, p.question

    def share(look: dict[str, bool]) -> Fraction:  # gene -> dominant look wanted
        return sum((pr for g, pr in odds.items() if all((gene in g) == dom for gene, dom in look.items())), Fraction(0))

    looks = {t.dominant: (t.gene, True) for t in spec.traits} | {t.recessive: (t.gene, False) for t in spec.traits}
    if t == "punnett.genotype":
        return number(float(100 * odds.get(grab(r"genotype (\w+)\?", q)[0], Fraction(0))))
    if t == "punnett.which_genotype":
        n = int(grab(r"exactly (\d+) of the", q)[0])
        hits = [c for c in p.choices or [] if odds.get(c, 0) * cells == n]
        assert len(hits) == 1
        return picked(p, hits[0])
    named = dict(looks[name] for name in re.findall(r"'([^']+)'", q))
    if t == "punnett.phenotype":
        return number(float(100 * share(named)))
    if t == "punnett.count_recessive":
        return str(int(share(named) * cells))
    raise AssertionError(t)


COMPASS = {0: "E", 45: "NE", 90: "N", 135: "NW", 180: "W", 225: "SW", 270: "S", 315: "SE"}


def map_check(p: Problem) -> str:
    spec = p.spec
    assert isinstance(spec, SchematicMap)
    at = {pl.name: (pl.x, pl.y) for pl in spec.places}

    def km(a: str, b: str) -> float:
        return math.dist(at[a], at[b])

    t, q = p.template, p.question
    if t == "map.distance":
        a, b = grab(r"from (\w+) to (\w+), in km", q)
        return number(km(a, b))
    if t == "map.bearing":
        b, a = grab(r"direction is (\w+) from (\w+)\?", q)
        angle = math.degrees(math.atan2(at[b][1] - at[a][1], at[b][0] - at[a][0])) % 360
        return COMPASS[round(angle)]
    if t == "map.nearest":
        a = grab(r"closest to (\w+) in", q)[0]
        return picked(p, min((n for n in at if n != a), key=lambda n: km(a, n)))
    if t == "map.which_distance":
        d, a = grab(r"exactly ([\d.]+) km from (\w+)", q)
        hits = [n for n in p.choices or [] if abs(km(a, n) - float(d)) < 1e-6]
        assert len(hits) == 1
        return picked(p, hits[0])
    if t == "map.travel_time":
        a, b, speed = grab(r"from (\w+) to (\w+) at (\d+) km/h", q)
        assert [(r.start, r.end) for r in spec.roads] == [(a, b)]
        return number(km(a, b) / int(speed) * 60)
    raise AssertionError(t)


CHECKS: dict[str, Callable[[Problem], str]] = {
    "molecule": chem_check, "circuit": circuit_check, "function_plot": plot_check,
    "punnett_square": punnett_check, "map": map_check,
}


@pytest.mark.parametrize("template", SCIENCE)
def test_truth_matches_an_independent_computation(template: str) -> None:
    for seed in range(16):
        p = WORLD.generate(random.Random(seed), template, LEVELS[seed % len(LEVELS)])
        assert p.kind == p.spec.kind == TEMPLATES[template].kind
        assert CHECKS[p.kind](p) == p.truth, (seed, p.question, p.truth)
        assert p.truth not in p.distractors and len(set(p.distractors)) == len(p.distractors) >= 3
        if p.answer_type == "choice":
            assert p.choices is not None and len(set(p.choices)) == 4
        assert p.visual_prompt and p.solution


# --- what is drawn -----------------------------------------------------------------------------


def _pixels(spec: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render(spec))).convert("RGB")).astype(int)


@pytest.mark.parametrize("name", ["ethanol", "pyridine", "caffeine", "cyclohexane", "dopamine"])
def test_a_molecule_shows_its_heteroatoms_in_their_colours(name: str) -> None:
    smiles = {"ethanol": "CCO", "pyridine": "c1ccncc1", "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
              "cyclohexane": "C1CCCCC1", "dopamine": "NCCc1ccc(O)c(O)c1"}[name]
    px = _pixels(Molecule(smiles=smiles, name=name))
    red = ((px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)).sum()
    blue = ((px[..., 2] > 200) & (px[..., 0] < 90) & (px[..., 1] < 90)).sum()
    count = atoms(REFERENCE[name][0])
    assert (red > 30) == ("O" in count) and (blue > 30) == ("N" in count), (red, blue)
    assert (px.min(axis=2) < 60).sum() > 300  # black bonds were drawn


def test_a_circuit_labels_every_resistor_and_the_battery() -> None:
    for seed in range(6):
        spec = WORLD.generate(random.Random(seed), "circuit.branch_current", LEVELS[seed % 4]).spec
        assert isinstance(spec, Circuit)
        drawn = Counter(seg.text for seg in circuits.schematic(spec).get_segments() if getattr(seg, "text", ""))
        wanted = Counter(f"{r.name}\n{number(r.ohms)} Ω" for s in spec.stages for b in s.branches for r in b.resistors)
        wanted[f"{number(spec.volts)} V"] += 1
        assert drawn == wanted


def test_a_function_plot_draws_each_curve_through_its_computed_points() -> None:
    for seed in range(4):
        p = WORLD.generate(random.Random(seed), "plot.intersection", LEVELS[seed])
        spec = p.spec
        assert isinstance(spec, FunctionPlot)
        px = _pixels(spec)
        frame, xticks, yticks = plots.layout(spec)
        x = int(p.truth)  # the meeting point is on both curves
        y = float(evaluate(parse(spec.curves[0].expr), float(x)))
        col, row = (round(v) for v in frame.px(x, y))
        for i, curve in enumerate(spec.curves):
            window = px[row - 6 : row + 7, col - 6 : col + 7]  # where the curves cross, one covers the other's centre
            assert (np.abs(window - np.array(plots.colour(curve.color, i))).sum(axis=2) < 30).sum() >= 3, (seed, curve.label)
        # The tick labels are the grid's values, inside the view.
        assert all(spec.x_min - 1e-9 <= v <= spec.x_max + 1e-9 for v, _ in xticks) and len(xticks) >= 3
        assert all(frame.y_min <= v <= frame.y_max for v, _ in yticks) and len(yticks) >= 3


def test_a_punnett_square_holds_the_cells_mendel_predicts() -> None:
    for p1, p2 in [("Aa", "Aa"), ("AaBb", "AaBb"), ("AAbb", "aaBb"), ("Dd", "dd"), ("GgHh", "gghh")]:
        spec = PunnettSquare(parent1=p1, parent2=p2)
        cells = genetics.cells(p1, p2)
        assert len(cells) == len(genetics.gametes(p1)) * len(genetics.gametes(p2)) == 4 ** (len(p1) // 2)
        assert {g: Fraction(n, len(cells)) for g, n in Counter(cells).items()} == {g: f for g, f in mendel(spec).items() if f}
    px = _pixels(PunnettSquare(parent1="AaBb", parent2="AaBb"))
    header = (np.abs(px - np.array([232, 232, 232])).sum(axis=2) == 0)
    assert header.sum() > 4 * 1000  # eight grey header cells: four gametes per parent


def test_a_map_is_drawn_to_scale() -> None:
    for seed in range(6):
        p = WORLD.generate(random.Random(seed), "map.which_distance", LEVELS[seed % 4])
        spec = p.spec
        assert isinstance(spec, SchematicMap)
        px = _pixels(spec)
        # Pixels per km from the grid lines; the places from their red dots.
        grid = (np.abs(px - np.array([200, 200, 190])).sum(axis=2) == 0)
        columns = np.flatnonzero(grid.sum(axis=0) > 0.5 * grid.sum(axis=0).max())
        lines = [c for i, c in enumerate(columns) if i == 0 or c - columns[i - 1] > 2]
        per_km = (lines[-1] - lines[0]) / ((len(lines) - 1) * spec.grid_km)
        dots = (np.abs(px - np.array([200, 30, 30])).sum(axis=2) == 0)
        ys, xs = np.nonzero(dots)
        centres: list[list[float]] = []
        for y, x in zip(ys, xs):
            near = next((c for c in centres if abs(c[0] / c[2] - x) < 8 and abs(c[1] / c[2] - y) < 8), None)
            if near is None:
                centres.append([float(x), float(y), 1.0])
            else:
                near[0] += x
                near[1] += y
                near[2] += 1
        assert len(centres) == len(spec.places)
        drawn = sorted(math.dist((a[0] / a[2], a[1] / a[2]), (b[0] / b[2], b[1] / b[2])) / per_km
                       for i, a in enumerate(centres) for b in centres[i + 1 :])
        true = sorted(math.dist((a.x, a.y), (b.x, b.y)) for i, a in enumerate(spec.places) for b in spec.places[i + 1 :])
        assert np.allclose(drawn, true, rtol=0.03, atol=0.15 * spec.grid_km), seed


# --- refusals ----------------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "molecule", "smiles": "C1CC"}, "smiles"),  # an unclosed ring: RDKit cannot read it
    ({"kind": "molecule", "smiles": "C(C)(C)(C)(C)C"}, "smiles"),  # a five-bonded carbon
    ({"kind": "molecule", "smiles": "C" * 61}, "smiles"),  # too large to read
    ({"kind": "molecule", "smiles": "C" * 151}, "smiles"),
    ({"kind": "molecule", "smiles": "CC O; rm -rf"}, "smiles"),
    ({"kind": "function_plot", "curves": [{"expr": "__import__('os').system('id')", "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "x.__class__", "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "eval(x)", "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "(" * 30 + "x" + ")" * 30, "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "+".join(["x"] * 60), "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "x" * 121, "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "1e400 * x", "label": "f"}], "x_min": 0, "x_max": 1}, "curves[0].expr"),
    ({"kind": "function_plot", "curves": [{"expr": "x^2", "label": "f"}], "x_min": 3, "x_max": 1}, "x_max"),
    ({"kind": "circuit", "volts": 5, "stages": [{"branches": [{"resistors": [{"name": "R1", "ohms": 2}, {"name": "R1", "ohms": 3}]}]}]}, "stages"),
    ({"kind": "circuit", "volts": 5, "stages": [{"branches": [{"resistors": [{"name": "R1", "ohms": 0}]}]}]}, "stages[0].branches[0].resistors[0].ohms"),
    ({"kind": "punnett_square", "parent1": "AB", "parent2": "Aa"}, "parent1"),
    ({"kind": "punnett_square", "parent1": "AaBb", "parent2": "Aa"}, "parent2"),
    ({"kind": "map", "width_km": 10, "height_km": 10, "grid_km": 0.1, "scale_km": 1, "places": [{"name": "A", "x": 1, "y": 1}]}, "grid_km"),
    ({"kind": "map", "width_km": 10, "height_km": 10, "grid_km": 1, "scale_km": 1, "places": [{"name": "A", "x": 11, "y": 1}]}, "places[0]"),
    ({"kind": "map", "width_km": 10, "height_km": 10, "grid_km": 1, "scale_km": 1, "places": [{"name": "A", "x": 1, "y": 1}],
      "roads": [{"start": "A", "end": "Atlantis"}]}, "roads[0]"),
]


@pytest.mark.parametrize(("data", "field"), BAD, ids=[f"{d['kind']}-{i}" for i, (d, _) in enumerate(BAD)])
def test_a_bad_spec_is_refused_in_one_line_naming_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as refused:
        render(parse_spec(data))  # the schema refuses it, or the renderer does (RDKit reads the SMILES)
    message = str(refused.value)
    assert "\n" not in message and field in message and len(message) < 300, message


def test_expressions_are_parsed_not_run() -> None:
    x = np.array([0.5, 1.0, 2.0])
    cases = {
        "-x^2": -(x**2), "2^3^2": np.full(3, 512.0), "2x + 3(x - 1)": 2 * x + 3 * (x - 1), "sin(pi/2) * x": x,
        "sqrt(x) / abs(-x)": np.sqrt(x) / x, "ln(e^x) + log(100)": x + 2, "x ** 2 - 1.5e1": x**2 - 15,
    }
    for text, want in cases.items():
        assert np.allclose(evaluate(parse(text), x), want), text
    with np.errstate(all="raise"):  # outside the domain: nan, not an exception
        assert np.isnan(evaluate(parse("ln(x - 5)"), x)).all()
    for text in ("open('/etc/passwd')", "x; x", "lambda: 1", "[x]", "x if x else 1", "globals()", "1 2 3 4 )"):
        with pytest.raises(ExpressionError):
            parse(text)


def test_atom_numbers_and_a_turn_change_only_what_they_say() -> None:
    plain = _pixels(Molecule(smiles="CCO"))
    numbered = _pixels(Molecule(smiles="CCO", atom_numbers=True))
    turned = _pixels(Molecule(smiles="CCO", rotation=90))
    ink = lambda px: int((px.min(axis=2) < 128).sum())  # noqa: E731
    assert ink(numbered) > ink(plain)  # the numbers 1, 2, 3 are extra ink
    assert abs(ink(turned) - ink(plain)) < 0.2 * ink(plain) and (turned != plain).any()  # the same bonds, turned


def test_large_rings_and_cages_still_draw() -> None:
    # Within the bounds, and once slow to lay out (CoordGen took minutes on the macrocycle).
    for smiles in ("C1" + "C" * 56 + "C1", "C12C3C4C1C5C2C3C45", "C1C2CC3CC1CC(C2)C3", "[Fe+2].[Cl-].[Cl-]"):
        spec = Molecule(smiles=smiles)
        assert spec_stamp(render(spec)) == spec_digest(spec), smiles


def test_wild_but_valid_expressions_still_draw() -> None:
    # Poles, overflow, values only somewhere: left out of the line, never an error or a hang.
    for expr in ("exp(exp(exp(x)))", "1/x", "tan(x)", "ln(x)", "x^x^x^x", "(1e6*x)^1e6"):
        spec = FunctionPlot(curves=[Curve(expr=expr, label="f")], x_min=-5, x_max=5)
        assert spec_stamp(render(spec)) == spec_digest(spec), expr


def test_a_curve_with_no_value_in_view_is_refused() -> None:
    # Nothing to draw: an empty plot would ask about a curve nobody can see (the problem is unpainted).
    for expr in ("sqrt(-1 - x^2)", "0/0", "9^9^9^9^9", "ln(x - 10)"):
        spec = FunctionPlot(curves=[Curve(expr="x", label="g"), Curve(expr=expr, label="f")], x_min=-5, x_max=5)
        with pytest.raises(SpecError, match=r"^curves\[1\]\.expr: .* has no finite value for x in \[-5, 5\]"):
            render(spec)


# --- determinism -------------------------------------------------------------------------------

EXAMPLES: dict[str, dict[str, Any]] = {
    "molecule": {"kind": "molecule", "smiles": "CC(=O)Oc1ccccc1C(=O)O", "name": "Aspirin", "title": "Structural formula"},
    "circuit": {"kind": "circuit", "volts": 12, "title": "A series-parallel circuit", "stages": [
        {"branches": [{"resistors": [{"name": "R1", "ohms": 4}]}]},
        {"branches": [{"resistors": [{"name": "R2", "ohms": 6}]}, {"resistors": [{"name": "R3", "ohms": 3}]}]}]},
    "function_plot": {"kind": "function_plot", "title": "f and g", "x_min": -3, "x_max": 6,
                      "curves": [{"expr": "x^2 - 2*x - 3", "label": "f"}, {"expr": "2*x - 3", "label": "g"}],
                      "points": [{"x": 1, "y": -4, "label": "V"}]},
    "punnett_square": {"kind": "punnett_square", "title": "A dihybrid cross", "parent1": "AaBb", "parent2": "Aabb",
                       "traits": [{"gene": "A", "dominant": "purple flowers", "recessive": "white flowers"},
                                  {"gene": "B", "dominant": "tall", "recessive": "short"}]},
    "map": {"kind": "map", "title": "Map of the region", "width_km": 50, "height_km": 40, "grid_km": 5, "scale_km": 10,
            "places": [{"name": "Paris", "x": 5, "y": 5}, {"name": "Lima", "x": 20, "y": 25}, {"name": "Oslo", "x": 35, "y": 10}],
            "roads": [{"start": "Paris", "end": "Lima"}]},
}


def test_rendering_is_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    here = {k: hashlib.sha256(render(parse_spec(d))).hexdigest() for k, d in EXAMPLES.items()}
    again = {k: hashlib.sha256(render(parse_spec(d))).hexdigest() for k, d in EXAMPLES.items()}
    script = (
        "import hashlib, json, sys\n"
        "from cadsynth.specs import parse_spec\nfrom cadsynth.agents.painter.render import render\n"
        "print(json.dumps({k: hashlib.sha256(render(parse_spec(d))).hexdigest() for k, d in json.loads(sys.argv[1]).items()}))\n"
    )
    # No fontconfig and a fresh matplotlib folder there: no font of the machine is used.
    env = {**os.environ, "FONTCONFIG_FILE": "/nonexistent", "FONTCONFIG_PATH": "/nonexistent", "MPLCONFIGDIR": str(tmp_path)}
    other = subprocess.run([sys.executable, "-c", script, json.dumps(EXAMPLES)], capture_output=True, text=True, check=True, env=env)
    assert here == again == json.loads(other.stdout)
    for kind, data in EXAMPLES.items():  # stamped like every kind: the simulated panel sees through it
        spec = parse_spec(data)
        assert spec_stamp(render(spec)) == spec_digest(spec), kind


# --- the simulated world -----------------------------------------------------------------------


def test_the_world_draws_every_kind_and_its_failure_modes() -> None:
    kinds = Counter(t.kind for t in TEMPLATES.values())
    assert all(kinds[k] >= 4 for k in KINDS)
    seen = Counter(WORLD.seed(random.Random(s)).kind for s in range(300))
    assert set(KINDS) <= set(seen)
    for kind in KINDS:
        changed = hows = 0
        for template in (t for t in SCIENCE if TEMPLATES[t].kind == kind):
            for seed in range(6):
                p = WORLD.generate(random.Random(seed), template, LEVELS[seed % 4])
                broken = FAILURES[kind](random.Random(seed), p.spec, p.question)
                if broken is None:
                    continue
                spec, how = broken
                hows += 1
                assert how in ("missing_label", "changed_value", "legend_mismatch") and spec != p.spec
                if seed < 2:
                    assert spec_stamp(render(spec)) == spec_digest(spec)  # still drawable: the image is simply wrong
                if kind == "molecule":  # the reference table goes by the caption: compare what RDKit reads
                    changed += molecule_facts(spec.smiles) != molecule_facts(p.spec.smiles)
                    continue
                try:
                    changed += CHECKS[kind](replace(p, spec=spec)) != p.truth
                except (AssertionError, KeyError, ValueError, StopIteration):
                    changed += 1  # what the question names is not in the image
        # A failure mode shows: the image as drawn mostly gives another answer than the reference.
        assert hows >= 12 and changed >= 0.6 * hows, (kind, changed, hows)


def test_a_simulated_run_counts_every_kind(small_run: Path) -> None:
    from tests.helpers import stats

    by_kind = stats("small", small_run)["by_kind"]
    # Which kinds a 72-problem run draws depends on the whole catalogue: most of the new ones.
    assert len(set(KINDS) & set(by_kind)) >= 3
    for kind, row in by_kind.items():
        assert row["proposals"] >= 1 and row["render_failures"] == 0 and row["kept"] <= row["proposals"]
        assert row["kept_correct"] <= row["kept_checked"] <= row["kept"]  # near-duplicates removed are not checked
        assert row["kept_correct_rate"] == (round(row["kept_correct"] / row["kept_checked"], 4) if row["kept_checked"] else None)
    assert sum(r["proposals"] for r in by_kind.values()) == stats("small", small_run)["proposals"]


# --- a real provider over the fake OpenAI server ------------------------------------------------

KEY_ENV = "CADS_DOMAINS_OPENAI_KEY"


def test_real_proposers_get_every_kind_painted(tmp_path: Path) -> None:
    from cadsynth.fakes import FakeOpenAI
    from cadsynth.fakes.panelist import Panelist

    panelist = Panelist(kinds=KINDS)
    spoiled: list[str] = []

    def responder(body: dict[str, Any]) -> Any:
        answer = panelist(body)
        spec = answer.get("image_spec") if isinstance(answer, dict) else None
        if spec and spec["kind"] == "molecule" and not spoiled:
            spec["smiles"] = "C1CC"  # once: a SMILES the schema lets through and RDKit cannot read
            spoiled.append(answer["question"])
        return answer

    with FakeOpenAI(responder, api_key="sk-domains") as server:
        common = {"base_url": server.base_url, "api_key_env": KEY_ENV, "timeout": 5}
        config = {
            "rounds": 2, "target": 1000, "proposals_per_agent": 5, "seed": 4,
            "panel": [
                {"name": "gpt", "provider": "openai", "model": "gpt-4o", "roles": ["proposer", "critic", "judge", "adversary"], **common},
                {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "structured_output": "function_calling",
                 "roles": ["judge"], **common},
            ],
        }
        (tmp_path / "panel.yaml").write_text(yaml.safe_dump(config))
        env = {KEY_ENV: "sk-domains"}
        cads("run", "panel.yaml", "--run-id", "kinds", cwd=tmp_path, env=env)
        s = json.loads(cads("stats", "kinds", "--json", cwd=tmp_path, env=env).stdout)
    assert s["status"] == "done" and spoiled
    proposals = records(tmp_path, "cads_proposals", "run = 'kinds'")
    by_kind = Counter(p["image_spec"]["kind"] for p in proposals)
    assert set(by_kind) == set(KINDS) and all(n >= 2 for n in by_kind.values())
    for p in proposals:
        if p["question"] in spoiled:
            assert p["image"] is None and p["paint_refused"].startswith("smiles: ")
            continue
        digest = p["image"].removeprefix("sha256:")
        png = (tmp_path / "cads-data" / "blobs" / digest[:2] / f"{digest}.png").read_bytes()
        assert spec_stamp(png) == spec_digest(parse_spec(p["image_spec"]))  # painted from its own spec
    molecule = s["by_kind"]["molecule"]
    assert molecule["render_failures"] == 1
    assert list(molecule["render_failure_reasons"]) == ["smiles: … is not a SMILES RDKit can read; write a valid SMILES, e.g. …"]
    assert all(s["by_kind"][k]["render_failures"] == 0 for k in KINDS if k != "molecule")
    assert {k: s["by_kind"][k]["proposals"] for k in KINDS} == dict(by_kind)
