"""Chemistry in the simulated world: molecules from a catalogue, drawn from SMILES by RDKit; counts,
rings and formulas computed by RDKit from the same SMILES."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from cadsynth.agents.sim.sciences import FAILURES, ordered_choice, titled
from cadsynth.agents.sim.world import DESCRIBERS, Draft, _nums, _template, _texts
from cadsynth.specs import ImageSpec, Molecule


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


TITLES = ("Structural formula", "Skeletal formula", "A molecule", "The molecule")


def _molecule_spec(rng: random.Random, name: str, smiles: str) -> Molecule:
    """The molecule at a random turn, under one of a few titles: the catalogue is small (see `titled`)."""
    return Molecule(smiles=smiles, name=name.capitalize(), rotation=rng.randrange(0, 360, 15), title=titled(rng, *TITLES))


@_template("chem.count_element", "molecule", "count_attr", ("counting", "text_recognition"), 0.12, inverse=("chem.which_count",))
def _chem_count_element(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level)
    facts = molecule_facts(smiles)
    element = rng.choice([e for e in facts.atoms if e != "H"])
    k = facts.atoms[element]
    how = " (each unlabelled corner or line end of the skeletal formula is a carbon)" if element == "C" else ""
    return Draft(
        _molecule_spec(rng, name, smiles), f"How many {ELEMENT_NAMES.get(element, element)} atoms are in the molecule drawn{how}?",
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
    options, letter, others = ordered_choice(word, wrong)
    return Draft(
        _molecule_spec(rng, name, smiles), f"Which element has exactly {k} atom{'s' * (k != 1)} in the molecule drawn (hydrogens not counted)?",
        "choice", letter, others, f"Counting each element's atoms in the drawing: {word} has {k} (option {letter}).",
        load, steps=1, choices=options,
    )


@_template("chem.rings", "molecule", "count_attr", ("counting", "shape"), 0.1, inverse=("chem.which_count",))
def _chem_rings(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level, lambda f: f.rings > 0)
    k = molecule_facts(smiles).rings
    return Draft(
        _molecule_spec(rng, name, smiles), "How many rings does the molecule drawn contain?", "integer", str(k),
        _nums(k, [k + 1, k - 1, 2 * k]), f"The drawing of {name} shows {k} closed ring{'s' * (k != 1)}.", load,
    )


@_template("chem.double_bonds", "molecule", "count_attr", ("counting", "shape"), 0.12, inverse=("chem.which_count",))
def _chem_double_bonds(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level, lambda f: f.double_bonds > 0)
    k = molecule_facts(smiles).double_bonds
    return Draft(
        _molecule_spec(rng, name, smiles), "How many double bonds are drawn in the molecule?", "integer", str(k),
        _nums(k, [k + 1, k - 1, k + 3]), f"Counting the doubled lines in the drawing of {name} gives {k}.", load,
    )


@_template("chem.hydrogens", "molecule", "missing", ("counting", "numeric_reasoning"), 0.3, inverse=("chem.count_element",))
def _chem_hydrogens(rng: random.Random, level: float) -> Draft:
    name, smiles, load = _pick_molecule(rng, level)
    facts = molecule_facts(smiles)
    k = facts.atoms.get("H", 0)
    return Draft(
        _molecule_spec(rng, name, smiles),
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
    options, letter, others = ordered_choice(facts.formula, _texts(facts.formula, wrong))
    return Draft(
        _molecule_spec(rng, name, smiles), "Which is the molecular formula of the molecule drawn?", "choice", letter, others,
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


DESCRIBERS["molecule"] = _describe_molecule  # type: ignore[assignment]
FAILURES["molecule"] = _break_molecule
