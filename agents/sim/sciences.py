"""The simulated world's science domains: molecules, circuits, function plots, Punnett squares and
maps, each with problems whose truths are computed from the spec, the text that describes the
image to a painter model, and the kind's failure modes (what a drawn image gets wrong).

Templates register with the world's catalogue (`world._template`) when the world is imported.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, cast

from cadsynth.agents.painter.genetics import cells, gametes
from cadsynth.agents.sim.world import (
    CITIES,
    DESCRIBERS,
    LETTERS,
    Draft,
    _choice,
    _count,
    _join,
    _nums,
    _template,
    _texts,
)
from cadsynth.specs import (
    Branch,
    Circuit,
    ColorName,
    Curve,
    FunctionPlot,
    ImageSpec,
    Molecule,
    Place,
    PunnettSquare,
    Resistor,
    Road,
    SchematicMap,
    Stage,
    Trait,
    fmt_number,
)

# What each kind's drawn image can get wrong: (rng, spec, question) -> (the spec as drawn, how) or
# None when the spec offers no such change. agents.sim.hazards asks here first.
FAILURES: dict[str, Callable[[random.Random, Any, str], tuple[ImageSpec, str] | None]] = {}


def _num_kind(v: float) -> str:
    return "integer" if abs(v - round(v)) < 1e-9 else "number"


# --- chemistry ---------------------------------------------------------------------------------

# (name, SMILES): common molecules, small to large.
MOLECULES = [
    ("ethanol", "CCO"), ("acetic acid", "CC(=O)O"), ("acetone", "CC(=O)C"), ("urea", "NC(=O)N"),
    ("glycine", "NCC(=O)O"), ("alanine", "CC(N)C(=O)O"), ("lactic acid", "CC(O)C(=O)O"),
    ("benzene", "c1ccccc1"), ("pyridine", "c1ccncc1"), ("cyclohexane", "C1CCCCC1"), ("toluene", "Cc1ccccc1"),
    ("phenol", "Oc1ccccc1"), ("styrene", "C=Cc1ccccc1"), ("benzoic acid", "OC(=O)c1ccccc1"),
    ("indole", "c1ccc2[nH]ccc2c1"), ("naphthalene", "c1ccc2ccccc2c1"), ("glucose", "OCC1OC(O)C(O)C(O)C1O"),
    ("dopamine", "NCCc1ccc(O)c(O)c1"), ("vanillin", "COc1cc(C=O)ccc1O"), ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("adrenaline", "CNCC(O)c1ccc(O)c(O)c1"), ("menthol", "CC(C)C1CCC(C)CC1O"), ("nicotine", "CN1CCCC1c1cccnc1"),
    ("serotonin", "NCCc1c[nH]c2ccc(O)cc12"), ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"), ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
]
ELEMENT_NAMES = {"C": "carbon", "H": "hydrogen", "N": "nitrogen", "O": "oxygen", "S": "sulfur", "Cl": "chlorine"}


@dataclass(frozen=True)
class Facts:
    """What a molecule is, computed by RDKit from its SMILES."""

    formula: str  # Hill order, e.g. C8H10N4O2
    atoms: dict[str, int]  # element -> count, hydrogens included
    rings: int
    double_bonds: int  # as drawn: aromatic rings in their Kekulé form


@lru_cache(maxsize=256)
def molecule_facts(smiles: str) -> Facts:
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"not a SMILES: {smiles!r}")
    full = Chem.AddHs(mol)
    atoms: dict[str, int] = {}
    for atom in full.GetAtoms():
        atoms[atom.GetSymbol()] = atoms.get(atom.GetSymbol(), 0) + 1
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    doubles = sum(b.GetBondType() == Chem.BondType.DOUBLE for b in kekule.GetBonds())
    return Facts(rdMolDescriptors.CalcMolFormula(mol), atoms, mol.GetRingInfo().NumRings(), doubles)


def _pick_molecule(rng: random.Random, level: float, ok: Callable[[Facts], bool] = lambda f: True) -> tuple[str, str, float]:
    """A catalogue molecule around the level's size: (name, SMILES, load)."""
    fitting = [(n, s) for n, s in MOLECULES if ok(molecule_facts(s))]
    i = min(len(fitting) - 1, max(0, round(level * (len(fitting) - 1)) + rng.randint(-3, 3)))
    name, smiles = fitting[i]
    return name, smiles, i / max(1, len(fitting) - 1)


def _molecule_spec(name: str, smiles: str) -> Molecule:
    return Molecule(smiles=smiles, name=name.capitalize(), title="Structural formula")


@_template("chem.count_element", "molecule", "count_attr", ("counting", "text_recognition"), 0.12, inverse=("chem.which_count",))
def _chem_count_element(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level)
    facts = molecule_facts(smiles)
    element = rng.choice([e for e in facts.atoms if e != "H"])
    k = facts.atoms[element]
    how = " (each unlabelled corner or line end of the skeletal formula is a carbon)" if element == "C" else ""
    return Draft(
        _molecule_spec(name, smiles), f"How many {ELEMENT_NAMES.get(element, element)} atoms are in the molecule drawn{how}?",
        "integer", str(k), _nums(k, [k + 1, k - 1, *(v for e, v in facts.atoms.items() if e not in ("H", element))]),
        f"Counting the {element} atoms of {name} in the drawing gives {k}.", load,
    )


@_template("chem.which_count", "molecule", "reverse_count", ("counting", "text_recognition"), 0.2, inverse=("chem.count_element",), reverse=True)
def _chem_which_count(rng: random.Random, level: float) -> Draft:
    def distinct(f: Facts) -> bool:
        heavy = [v for e, v in f.atoms.items() if e != "H"]
        return len(heavy) >= 2 and len(set(heavy)) == len(heavy)

    name, smiles, load = _pick_molecule(rng, level, distinct)
    facts = molecule_facts(smiles)
    element = rng.choice([e for e in facts.atoms if e != "H"])
    k = facts.atoms[element]
    word = ELEMENT_NAMES[element]
    wrong = [ELEMENT_NAMES[e] for e in facts.atoms if e not in ("H", element)] + [w for e, w in ELEMENT_NAMES.items() if e not in facts.atoms]
    options, letter, others = _choice(rng, word, wrong)
    return Draft(
        _molecule_spec(name, smiles), f"Which element has exactly {k} atom{'s' * (k != 1)} in the molecule drawn (hydrogens not counted)?",
        "choice", letter, others, f"Counting each element's atoms in the drawing: {word} has {k} (option {letter}).",
        load, steps=1, choices=options,
    )


@_template("chem.rings", "molecule", "count_attr", ("counting", "shape"), 0.1, inverse=("chem.which_count",))
def _chem_rings(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level, lambda f: f.rings > 0)
    k = molecule_facts(smiles).rings
    return Draft(
        _molecule_spec(name, smiles), "How many rings does the molecule drawn contain?", "integer", str(k),
        _nums(k, [k + 1, k - 1, 2 * k]), f"The drawing of {name} shows {k} closed ring{'s' * (k != 1)}.", load,
    )


@_template("chem.double_bonds", "molecule", "count_attr", ("counting", "shape"), 0.12, inverse=("chem.which_count",))
def _chem_double_bonds(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level, lambda f: f.double_bonds > 0)
    k = molecule_facts(smiles).double_bonds
    return Draft(
        _molecule_spec(name, smiles), "How many double bonds are drawn in the molecule?", "integer", str(k),
        _nums(k, [k + 1, k - 1, k + 3]), f"Counting the doubled lines in the drawing of {name} gives {k}.", load,
    )


@_template("chem.hydrogens", "molecule", "missing", ("counting", "numeric_reasoning"), 0.3, inverse=("chem.count_element",))
def _chem_hydrogens(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level)
    facts = molecule_facts(smiles)
    k = facts.atoms.get("H", 0)
    return Draft(
        _molecule_spec(name, smiles),
        "How many hydrogen atoms does the molecule have in all, counting those implied at each carbon?",
        "integer", str(k), _nums(k, [k - 1, k + 1, k - 2, k + 2]),
        f"Each atom takes hydrogens to fill its valence; the molecular formula is {facts.formula}, so {k} hydrogens.",
        load, steps=2,
    )


@_template("chem.formula", "molecule", "lookup", ("counting", "text_recognition", "numeric_reasoning"), 0.25, inverse=("chem.hydrogens",))
def _chem_formula(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level)
    facts = molecule_facts(smiles)
    wrong = [_formula({**facts.atoms, "H": facts.atoms.get("H", 0) + d}) for d in (2, -2)]
    wrong.append(_formula({**facts.atoms, "C": facts.atoms["C"] + 1, "H": facts.atoms.get("H", 0) + 2}))
    options, letter, others = _choice(rng, facts.formula, _texts(facts.formula, wrong))
    return Draft(
        _molecule_spec(name, smiles), "Which is the molecular formula of the molecule drawn?", "choice", letter, others,
        f"Counting atoms, with implied hydrogens: {facts.formula} (option {letter}).", load, steps=2, choices=options,
    )


def _formula(atoms: dict[str, int]) -> str:
    """Hill order: C, H, then the rest alphabetically; a count of 1 is not written."""
    order = ["C", "H"] + sorted(e for e in atoms if e not in ("C", "H"))
    return "".join(f"{e}{atoms[e] if atoms[e] != 1 else ''}" for e in order if atoms.get(e, 0) > 0)


def _describe_molecule(spec: Molecule, canvas: str) -> str:
    facts = molecule_facts(spec.smiles)
    return (
        f"A skeletal structural formula on {canvas}, black bonds, heteroatoms as coloured letters (N blue, O red), "
        f"aromatic rings with alternating double bonds: the molecule with SMILES {spec.smiles} ({facts.formula}, "
        f"{facts.rings} ring{'s' * (facts.rings != 1)}). Caption underneath: '{spec.name}'."
    )


def _break_molecule(rng: random.Random, spec: Molecule, question: str) -> tuple[ImageSpec, str] | None:
    # A different molecule drawn: a cyclopropyl on its first atom (more carbons, hydrogens and a ring).
    changed = "C1CC1" + spec.smiles
    try:
        molecule_facts(changed)
    except ValueError:
        return None
    return spec.model_copy(update={"smiles": changed}), "changed_value"


# --- physics: circuits -------------------------------------------------------------------------

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
    spec = Circuit(volts=round(total * current, 6), stages=built, title="Circuit")
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


# --- math: function plots ----------------------------------------------------------------------

CURVE_NAMES = ["f", "g", "h", "p"]


def _term(coef: float, power: str, first: bool) -> str:
    if abs(coef) < 1e-12:
        return ""
    sign = "-" if coef < 0 else ("" if first else "+")
    mag = abs(coef)
    text = fmt_number(mag) if (mag != 1 or not power) else ""
    body = f"{text}{'*' if text and power else ''}{power}" if power else text
    return f"{sign} {body}".strip() if not first else f"{sign}{body}"


def poly_text(a: float, b: float, c: float) -> str:
    """'a*x^2 + b*x + c' written as a person would: x^2 - 2*x - 3."""
    parts = [p for p in (_term(a, "x^2", True), _term(b, "x", not a), _term(c, "", not a and not b)) if p]
    return " ".join(parts) or "0"


@dataclass
class _Parabola:
    a: float
    h: float  # vertex x
    k: float  # vertex y

    @property
    def coefficients(self) -> tuple[float, float, float]:
        return self.a, -2 * self.a * self.h, self.a * self.h * self.h + self.k

    def text(self) -> str:
        return poly_text(*self.coefficients)

    def at(self, x: float) -> float:
        return self.a * (x - self.h) ** 2 + self.k


def _parabola(rng: random.Random, level: float) -> _Parabola:
    a = rng.choice((1.0, -1.0) if level < 0.5 else (1.0, -1.0, 2.0, -2.0, 0.5, -0.5))
    h = float(rng.randint(-3, 3))
    k = float(rng.randint(-5, 5))
    if a == 0.5 or a == -0.5:
        h = float(rng.choice((-2, 0, 2)))  # whole coefficients
    return _Parabola(a, h, k)


def _plot(
    curves: list[tuple[str, str]], x_min: float, x_max: float, title: str = "", y: tuple[float, float] | None = None,
) -> FunctionPlot:
    colors = ["blue", "orange", "green", "purple"]
    return FunctionPlot(
        title=title, x_min=x_min, x_max=x_max, y_min=y[0] if y else None, y_max=y[1] if y else None,
        curves=[Curve(expr=e, label=n, color=cast(ColorName, colors[i])) for i, (n, e) in enumerate(curves)],
    )


@_template("plot.extremum", "function_plot", "argmax", ("spatial_recognition", "text_recognition"), 0.12, inverse=("plot.which_curve",))
def _plot_extremum(rng: random.Random, level: float) -> Draft:
    p = _parabola(rng, level)
    word = "minimum" if p.a > 0 else "maximum"
    ask_x = rng.random() < 0.5
    truth = p.h if ask_x else p.k
    spec = _plot([("f", p.text())], p.h - 4, p.h + 4, "The graph of f")
    q = f"At what value of x does f reach its {word}?" if ask_x else f"What is the {word} value of f(x) on the graph?"
    return Draft(
        spec, q, _num_kind(truth), fmt_number(truth), _nums(truth, [p.k if ask_x else p.h, -truth, truth + 1]),
        f"The parabola turns at ({fmt_number(p.h)}, {fmt_number(p.k)}), read off the grid; the answer is {fmt_number(truth)}.",
        0.5 * level + 0.25 * (abs(p.a) != 1),
    )


@_template("plot.which_curve", "function_plot", "reverse_lookup", ("spatial_recognition", "color"), 0.18, inverse=("plot.extremum",), reverse=True)
def _plot_which_curve(rng: random.Random, level: float) -> Draft:
    n = 3 if level < 0.5 else 4
    hs = rng.sample(range(-4, 5), n)
    parabolas = [_Parabola(1.0, float(h), float(rng.randint(-4, 4))) for h in hs]
    names = CURVE_NAMES[:n]
    i = rng.randrange(n)
    low = min(p.k for p in parabolas)
    spec = _plot([(nm, p.text()) for nm, p in zip(names, parabolas)], -7, 7, "Four parabolas" if n == 4 else "Three parabolas",
                 (low - 3, low + 17))  # the view on the vertices, not the arms
    options = names + [nm for nm in CURVE_NAMES if nm not in names]
    wrong = [options[j] for j in range(len(options)) if j != i]
    order = sorted(range(n), key=lambda j: abs(hs[j] - hs[i]))
    wrong = [names[j] for j in order if j != i] + wrong
    choices, letter, others = _choice(rng, names[i], _texts(names[i], wrong))
    return Draft(
        spec, f"Which curve has its lowest point at x = {hs[i]}?", "choice", letter, others,
        f"The legend pairs each colour with a name; the {spec.curves[i].color} curve, {names[i]}, bottoms out at x = {hs[i]} (option {letter}).",
        (n - 3) * 0.5 + 0.3 * level, choices=choices,
    )


def _meeting_points(rng: random.Random, p: _Parabola) -> tuple[int, int]:
    """Two whole x values near the vertex, far enough apart that the line crosses the curve at a
    visible angle (slopes differ by a * (x2 - x1))."""
    gap = 2 if abs(p.a) >= 1 else 4
    while True:
        x1, x2 = sorted(rng.sample(range(int(p.h) - 3, int(p.h) + 4), 2))
        if x2 - x1 >= gap:
            return x1, x2


def _line_through(p: _Parabola, x1: int, x2: int) -> tuple[float, float]:
    m = (p.at(x2) - p.at(x1)) / (x2 - x1)
    return m, p.at(x1) - m * x1


@_template("plot.crossings", "function_plot", "count_threshold", ("counting", "spatial_relationship"), 0.12, inverse=("plot.intersection",))
def _plot_crossings(rng: random.Random, level: float) -> Draft:
    p = _parabola(rng, 0.3)
    k = rng.choice((0, 1, 2)) if level < 0.5 else rng.choice((1, 2))
    x_min, x_max = p.h - 5, p.h + 5
    sign = 1 if p.a > 0 else -1
    if k == 2:
        x1, x2 = _meeting_points(rng, p)
        m, q = _line_through(p, x1, x2)
        xs = [x1, x2]
    elif k == 1:  # through one point; the other crossing lies outside the window
        x1 = int(p.h) + rng.choice((-2, -1, 1, 2))
        x2 = int(p.h) + (8 if x1 > p.h else -8)
        m, q = _line_through(p, min(x1, x2), max(x1, x2))
        xs = [x1]
    else:  # a flat line clear of the parabola
        m, q = 0.0, p.k - sign * rng.randint(2, 4)
        xs = []
    spec = _plot([("f", p.text()), ("g", poly_text(0, m, q))], x_min, x_max, "f and g")
    where = f" at x = {_join([str(x) for x in xs])}" if xs else ""
    return Draft(
        spec, "How many times do the graphs of f and g cross within the window shown?", "integer", str(k),
        _nums(k, [2 - k if k != 1 else 2, k + 1, 0 if k else 1]),
        f"Follow the line g across the parabola f: they meet {k} time{'s' * (k != 1)}{where}.",
        0.3 + 0.3 * level, steps=0,
    )


@_template("plot.intersection", "function_plot", "lookup", ("spatial_relationship", "numeric_reasoning"), 0.2, inverse=("plot.crossings",))
def _plot_intersection(rng: random.Random, level: float) -> Draft:
    p = _parabola(rng, level)
    x1, x2 = _meeting_points(rng, p)
    m, q = _line_through(p, x1, x2)
    spec = _plot([("f", p.text()), ("g", poly_text(0, m, q))], p.h - 5, p.h + 5, "f and g")
    big = rng.random() < 0.5
    x = x2 if big else x1
    word = "larger" if big else "smaller"
    return Draft(
        spec, f"The graphs of f and g meet twice. What is the {word} x-coordinate of the two meeting points?",
        "integer", str(x), _nums(x, [x1 if big else x2, x + 1, x - 1, p.h]),
        f"The line g crosses the parabola f at x = {x1} and x = {x2}; the {word} is {x}.",
        0.3 * level + 0.2 * (abs(p.a) != 1), steps=1,
    )


@_template("plot.root_sum", "function_plot", "sum", ("spatial_recognition", "numeric_reasoning"), 0.2, inverse=("plot.extremum",))
def _plot_root_sum(rng: random.Random, level: float) -> Draft:
    r1, r2 = sorted(rng.sample(range(-5, 6), 2))
    a = rng.choice((1.0, -1.0) if level < 0.5 else (1.0, -1.0, 0.5, -0.5))
    if abs(a) == 0.5 and (r1 + r2) % 2:
        a = 1.0
    b, c = -a * (r1 + r2), a * r1 * r2
    spec = _plot([("f", poly_text(a, b, c))], min(r1, r2) - 3, max(r1, r2) + 3, "The graph of f")
    s = r1 + r2
    return Draft(
        spec, "The equation f(x) = 0 has two solutions. What is their sum?", "integer", str(s),
        _nums(s, [r2 - r1, r1 * r2, -s]), f"f crosses the x axis at x = {r1} and x = {r2}; {r1} + {r2} = {s}.",
        0.2 + 0.4 * level, steps=1,
    )


def _describe_plot(spec: FunctionPlot, canvas: str) -> str:
    curves = "; ".join(f"{c.label} (y = {c.expr}, {c.color or 'default'} line)" for c in spec.curves)
    points = "; ".join(f"point {p.label or ''} at ({fmt_number(p.x)}, {fmt_number(p.y)})" for p in spec.points)
    return (
        f"A function plot on {canvas}: x from {fmt_number(spec.x_min)} to {fmt_number(spec.x_max)} with a light grid, "
        f"numbered axes and the x and y axes drawn dark. Curves: {curves}. A legend names each curve.{' ' + points + '.' if points else ''}"
    )


def _break_plot(rng: random.Random, spec: FunctionPlot, question: str) -> tuple[ImageSpec, str] | None:
    data = spec.model_dump(mode="json")
    if len(data["curves"]) > 2 and rng.random() < 0.5:
        # The legend pairs two names with each other's curves.
        a, b = rng.sample(data["curves"], 2)
        a["label"], b["label"] = b["label"], a["label"]
        return FunctionPlot.model_validate(data), "legend_mismatch"
    # A curve drawn moved one right and two up from the function the reference was computed for.
    curve = data["curves"][0] if len(data["curves"]) < 3 else rng.choice(data["curves"])
    curve["expr"] = f"({re.sub(r'x', '(x - 1)', curve['expr'])}) + 2"
    try:
        return FunctionPlot.model_validate(data), "changed_value"
    except ValueError:
        return None


# --- biology: Punnett squares ------------------------------------------------------------------

GENES = "ABDEGHRT"  # capitals that do not look like their small letter
TRAITS = [
    ("purple flowers", "white flowers"), ("tall", "short"), ("round seeds", "wrinkled seeds"),
    ("yellow seeds", "green seeds"), ("brown eyes", "blue eyes"), ("black fur", "white fur"),
]


def offspring(spec: PunnettSquare) -> list[str]:
    """Every cell's genotype, row by row, as the painter draws them."""
    return cells(spec.parent1, spec.parent2)


def shows_dominant(genotype: str, gene: str) -> bool:
    return gene in genotype


@dataclass
class _Cross:
    spec: PunnettSquare
    genes: list[str]
    traits: list[tuple[str, str]]
    load: float


def _cross(rng: random.Random, level: float, two: bool | None = None) -> _Cross:
    if two is None:
        two = level > 0.5 and rng.random() < 0.3 + level
    genes = rng.sample(GENES, 2 if two else 1)
    traits = rng.sample(TRAITS, len(genes))

    def genotype() -> str:
        return "".join(rng.choice((g + g.lower(), g + g.lower(), g + g, g.lower() * 2)) for g in genes)

    p1, p2 = genotype(), genotype()
    while p1 == p2 and all(p1[i] == p1[i + 1] for i in range(0, len(p1), 2)):  # every child alike: no question
        p2 = genotype()
    spec = PunnettSquare(
        parent1=p1, parent2=p2, title="A genetic cross",
        traits=[Trait(gene=g, dominant=d, recessive=r) for g, (d, r) in zip(genes, traits)],
    )
    return _Cross(spec, genes, traits, 0.7 if two else 0.1 + 0.2 * level)


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2)


@_template("punnett.genotype", "punnett_square", "lookup", ("text_recognition", "counting", "numeric_reasoning"), 0.1, inverse=("punnett.which_genotype",))
def _punnett_genotype(rng: random.Random, level: float) -> Draft:
    x = _cross(rng, level)
    square = offspring(x.spec)
    g = rng.choice(square)
    pct = _pct(square.count(g), len(square))
    others = sorted({_pct(square.count(o), len(square)) for o in square if o != g})
    return Draft(
        x.spec, f"What percentage of the offspring are expected to have the genotype {g}? Answer with the number only.",
        _num_kind(pct), fmt_number(pct), _nums(pct, [*others, 100 - pct, pct * 2], 25 if len(square) == 4 else 6.25),
        f"{g} fills {square.count(g)} of the {len(square)} square: {square.count(g)}/{len(square)} = {fmt_number(pct)}%.",
        x.load, _num_kind(pct) == "number", 1,
    )


@_template("punnett.which_genotype", "punnett_square", "reverse_count", ("text_recognition", "counting"), 0.15, inverse=("punnett.genotype",), reverse=True)
def _punnett_which_genotype(rng: random.Random, level: float) -> Draft:
    while True:
        x = _cross(rng, level, two=True)  # one gene has three genotypes: too few for four options
        square = offspring(x.spec)
        counts = {g: square.count(g) for g in dict.fromkeys(square)}
        unique = [g for g, n in counts.items() if list(counts.values()).count(n) == 1]
        if unique:
            break
    g = rng.choice(unique)
    n = counts[g]
    hetero = "".join(c + c.lower() for c in x.genes)
    pool = [o for o in counts if o != g] + cells(hetero, hetero)  # then genotypes this cross cannot give
    choices, letter, others = _choice(rng, g, _texts(g, pool))
    return Draft(
        x.spec, f"Which genotype fills exactly {n} of the {len(square)} square of the square?", "choice", letter, others,
        f"Counting each genotype in the square: {g} appears {n} times (option {letter}).",
        x.load, choices=choices,
    )


@_template("punnett.phenotype", "punnett_square", "scale", ("text_recognition", "numeric_reasoning"), 0.2, inverse=("punnett.which_genotype",))
def _punnett_phenotype(rng: random.Random, level: float) -> Draft:
    while True:  # a look some offspring have
        x = _cross(rng, level)
        square = offspring(x.spec)
        picks = [rng.random() < 0.6 for _ in x.genes]  # dominant or recessive look, per gene
        n = sum(all(shows_dominant(c, g) == dom for g, dom in zip(x.genes, picks)) for c in square)
        if n:
            break
    wanted = [d if dom else r for dom, (d, r) in zip(picks, x.traits)]
    pct = _pct(n, len(square))
    return Draft(
        x.spec, f"What percentage of the offspring are expected to show {_join([repr(w) for w in wanted])}? Answer with the number only.",
        _num_kind(pct), fmt_number(pct), _nums(pct, [100 - pct, _pct(len(square) - n, len(square)) / 2, pct / 2], 25 if len(square) == 4 else 6.25),
        f"A capital allele shows the dominant trait (legend). {n} of the {len(square)} square are {_join(wanted)}: {fmt_number(pct)}%.",
        x.load, _num_kind(pct) == "number", 2,
    )


@_template("punnett.count_recessive", "punnett_square", "count_attr", ("counting", "text_recognition"), 0.1, inverse=("punnett.which_genotype",))
def _punnett_count_recessive(rng: random.Random, level: float) -> Draft:
    while True:  # a trait some offspring show
        x = _cross(rng, level)
        square = offspring(x.spec)
        g = rng.choice(x.genes)
        n = sum(not shows_dominant(c, g) for c in square)
        if n:
            break
    trait = dict(zip(x.genes, x.traits))[g][1]
    return Draft(
        x.spec, f"In how many of the {len(square)} square does the offspring show {trait!r}?", "integer", str(n),
        _nums(n, [len(square) - n, n + 1, n - 1]),
        f"{trait.capitalize()} needs two small {g.lower()} alleles ({g.lower()}{g.lower()}); {n} square have them.",
        x.load,
    )


def _describe_punnett(spec: PunnettSquare, canvas: str) -> str:
    legend = "; ".join(f"{t.gene}_ = {t.dominant}, {t.gene.lower()}{t.gene.lower()} = {t.recessive}" for t in spec.traits)
    drawn = ", ".join(offspring(spec)) if spec.fill_cells else "left empty"
    return (
        f"A Punnett square on {canvas}: gametes of {spec.parent1} head the rows ({', '.join(gametes(spec.parent1))}), "
        f"gametes of {spec.parent2} head the columns ({', '.join(gametes(spec.parent2))}); cells row by row: {drawn}. "
        f"Under it: 'Cross: {spec.parent1} (rows) x {spec.parent2} (columns)' and the legend {legend}."
    )


def _break_punnett(rng: random.Random, spec: PunnettSquare, question: str) -> tuple[ImageSpec, str] | None:
    data = spec.model_dump(mode="json")
    named = [t for t in data["traits"] if t["dominant"] in question or t["recessive"] in question]
    if named and rng.random() < 0.5:
        t = named[0]
        t["dominant"], t["recessive"] = t["recessive"], t["dominant"]  # the legend pairs the traits the wrong way
        return PunnettSquare.model_validate(data), "legend_mismatch"
    # A parent drawn with another genotype: its first gene flipped between hetero- and homozygous.
    parent = rng.choice(("parent1", "parent2"))
    g = data[parent]
    first = g[0].upper()
    swapped = first + first if g[:2] != first + first else first + first.lower()
    data[parent] = swapped + g[2:]
    return PunnettSquare.model_validate(data), "changed_value"


# --- geography: schematic maps -----------------------------------------------------------------

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


DESCRIBERS.update({
    "molecule": _describe_molecule,  # type: ignore[dict-item]
    "circuit": _describe_circuit,  # type: ignore[dict-item]
    "function_plot": _describe_plot,  # type: ignore[dict-item]
    "punnett_square": _describe_punnett,  # type: ignore[dict-item]
    "map": _describe_map,  # type: ignore[dict-item]
})
FAILURES.update({
    "molecule": _break_molecule,
    "circuit": _break_circuit,
    "function_plot": _break_plot,
    "punnett_square": _break_punnett,
    "map": _break_map,
})

__all__ = ["FAILURES", "LETTERS", "MOLECULES", "circuit_ohms", "molecule_facts", "offspring", "resistor_current"]
