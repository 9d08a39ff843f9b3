"""Physics in the simulated world: resistor circuits in series and parallel stages, with whole-ohm
equivalents; resistance, currents and voltages from the series and parallel rules."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from cadsynth.agents.sim.sciences import FAILURES, titled
from cadsynth.agents.sim.world import DESCRIBERS, Draft, _count, _num_kind, _nums, _template
from cadsynth.specs import Branch, Circuit, ImageSpec, Resistor, Stage, fmt_number


# Parallel groups whose equivalent resistance is a whole number of ohms.
PARALLEL = [(3, 6), (6, 12), (4, 4), (10, 15), (12, 4), (20, 5), (6, 6), (8, 8), (12, 6), (2, 2), (30, 15), (2, 3, 6), (4, 6, 12), (6, 12, 12)]
SINGLE = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]


def stage_ohms(stage: Stage) -> float:
    """A stage's equivalent resistance: its branches in parallel, each branch's resistors in series."""
    return 1 / math.fsum(1 / math.fsum(r.ohms for r in b.resistors) for b in stage.branches)


def circuit_ohms(spec: Circuit) -> float:
    return math.fsum(stage_ohms(s) for s in spec.stages)


@dataclass
class _Circuit:
    spec: Circuit
    resistors: list[Resistor]
    stage_of: dict[str, int]  # resistor name -> its stage
    load: float


def _circuit(rng: random.Random, level: float, parallel: bool = False) -> _Circuit:
    n, load = _count(rng, level, 1, 3)
    kinds = [rng.random() < 0.5 + 0.3 * level for _ in range(n)]
    if parallel and not any(kinds):
        kinds[rng.randrange(n)] = True
    stages: list[list[list[float]]] = []
    for is_parallel in kinds:
        if is_parallel:
            group = list(rng.choice(PARALLEL))
            rng.shuffle(group)
            branches = [[float(v)] for v in group]
            if level > 0.6 and group[0] >= 4 and rng.random() < 0.5:  # a branch of two in series
                a = rng.randint(1, int(group[0]) - 1)
                branches[0] = [float(a), float(group[0] - a)]
            stages.append(branches)
        else:
            stages.append([[float(rng.choice(SINGLE))]])
    count = 0
    built: list[Stage] = []
    for values in stages:
        brs = []
        for branch in values:
            rs = []
            for v in branch:
                count += 1
                rs.append(Resistor(name=f"R{count}", ohms=v))
            brs.append(Branch(resistors=rs))
        built.append(Stage(branches=brs))
    total = math.fsum(stage_ohms(s) for s in built)
    current = rng.choice((0.5, 1.0, 1.5, 2.0, 3.0)) if level > 0.4 else rng.choice((1.0, 2.0, 3.0))
    spec = Circuit(volts=round(total * current, 6), stages=built, title=titled(rng, "Circuit", "A circuit", "Circuit diagram", "Resistor network"))
    resistors = [r for s in built for b in s.branches for r in b.resistors]
    stage_of = {r.name: i for i, s in enumerate(built) for b in s.branches for r in b.resistors}
    return _Circuit(spec, resistors, stage_of, load)


def _branch_of(spec: Circuit, name: str) -> tuple[Stage, Branch]:
    return next((s, b) for s in spec.stages for b in s.branches if any(r.name == name for r in b.resistors))


def resistor_current(spec: Circuit, name: str) -> float:
    """The current through a resistor: the stage's voltage over its branch's resistance."""
    stage, branch = _branch_of(spec, name)
    current = spec.volts / circuit_ohms(spec)
    return current * stage_ohms(stage) / math.fsum(r.ohms for r in branch.resistors)


@_template("circuit.resistance", "circuit", "sum", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("circuit.voltage",))
def _circuit_resistance(rng: random.Random, level: float) -> Draft:
    c = _circuit(rng, level)
    total = circuit_ohms(c.spec)
    parts = [fmt_number(stage_ohms(s)) for s in c.spec.stages]
    series = math.fsum(r.ohms for r in c.resistors)
    return Draft(
        c.spec, "What is the equivalent resistance of the whole circuit, in ohms?", _num_kind(total), fmt_number(total),
        _nums(total, [series, total + 1, total / 2]),
        f"Parallel branches combine as 1/R = sum of 1/R_i, stages add in series: {' + '.join(parts)} = {fmt_number(total)} ohms.",
        c.load, _num_kind(total) == "number", len(c.spec.stages),
    )


@_template("circuit.current", "circuit", "scale", ("text_recognition", "numeric_reasoning"), 0.2, inverse=("circuit.voltage",))
def _circuit_current(rng: random.Random, level: float) -> Draft:
    c = _circuit(rng, level)
    total = circuit_ohms(c.spec)
    i = c.spec.volts / total
    series = math.fsum(r.ohms for r in c.resistors)
    return Draft(
        c.spec, "What current, in amperes, flows through the battery?", _num_kind(i), fmt_number(i),
        _nums(i, [c.spec.volts / series, i * 2, i / 2], 0.5),
        f"The equivalent resistance is {fmt_number(total)} ohms; I = V / R = {fmt_number(c.spec.volts)} / {fmt_number(total)} = {fmt_number(i)} A.",
        c.load, _num_kind(i) == "number", len(c.spec.stages) + 1,
    )


@_template("circuit.voltage", "circuit", "reverse_scale", ("text_recognition", "numeric_reasoning"), 0.25, inverse=("circuit.current",), reverse=True)
def _circuit_voltage(rng: random.Random, level: float) -> Draft:
    c = _circuit(rng, level)
    spec = c.spec.model_copy(update={"show_volts": False})
    total = circuit_ohms(spec)
    i = spec.volts / total
    v = spec.volts
    series = math.fsum(r.ohms for r in c.resistors)
    return Draft(
        spec, f"A current of {fmt_number(i)} A flows through the battery. What is the battery's voltage, in volts?",
        _num_kind(v), fmt_number(v), _nums(v, [i * series, v + i, total]),
        f"The equivalent resistance is {fmt_number(total)} ohms; V = I R = {fmt_number(i)} x {fmt_number(total)} = {fmt_number(v)} V.",
        c.load, _num_kind(v) == "number", len(spec.stages) + 1,
    )


@_template("circuit.branch_current", "circuit", "missing", ("text_recognition", "numeric_reasoning", "spatial_relationship"), 0.3, inverse=("circuit.current",))
def _circuit_branch_current(rng: random.Random, level: float) -> Draft:
    c = _circuit(rng, level, parallel=True)
    inside = [r for r in c.resistors if len(c.spec.stages[c.stage_of[r.name]].branches) > 1]
    r = rng.choice(inside)
    i = resistor_current(c.spec, r.name)
    whole = c.spec.volts / circuit_ohms(c.spec)
    stage = c.spec.stages[c.stage_of[r.name]]
    return Draft(
        c.spec, f"What current, in amperes, flows through {r.name}?", _num_kind(i), fmt_number(i),
        _nums(i, [whole, whole - i, whole / len(stage.branches)], 0.5),
        f"The battery current is {fmt_number(whole)} A; the parallel stage holding {r.name} has "
        f"{fmt_number(whole * stage_ohms(stage))} V across it, so its branch carries that over its resistance: {fmt_number(i)} A.",
        c.load, _num_kind(i) == "number", len(c.spec.stages) + 2,
    )


def _describe_circuit(spec: Circuit, canvas: str) -> str:
    stages = []
    for k, s in enumerate(spec.stages, 1):
        branches = [" then ".join(f"{r.name} ({fmt_number(r.ohms)} ohm)" if r.show_value else r.name for r in b.resistors) for b in s.branches]
        stages.append(f"stage {k}: " + (branches[0] if len(branches) == 1 else "parallel branches " + "; ".join(branches)))
    volts = f"a {fmt_number(spec.volts)} V battery" if spec.show_volts else "a battery (voltage not shown)"
    return (
        f"A circuit schematic on {canvas}: {volts} on the left, then around the loop in series: {'; '.join(stages)}. "
        f"Each resistor is a zigzag labelled with its name and value; junctions are dots."
    )


def _break_circuit(rng: random.Random, spec: Circuit, question: str) -> tuple[ImageSpec, str] | None:
    data = spec.model_dump(mode="json")
    resistors = [r for s in data["stages"] for b in s["branches"] for r in b["resistors"]]
    named = [r for r in resistors if re.search(rf"\b{r['name']}\b", question)]
    if named and rng.random() < 0.5:
        used = {r["name"] for r in resistors}
        named[0]["name"] = next(f"R{k}" for k in range(len(resistors) + 1, 99) if f"R{k}" not in used)
        how = "missing_label"
    else:
        r = rng.choice(named or resistors)
        r["ohms"] = r["ohms"] * 2 + 1
        how = "changed_value"
    return Circuit.model_validate(data), how


DESCRIBERS["circuit"] = _describe_circuit  # type: ignore[assignment]
FAILURES["circuit"] = _break_circuit
