"""Biology in the simulated world: Punnett squares of one- and two-gene crosses (complete dominance);
genotype and phenotype shares counted over the square's cells, as the painter draws them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from cadsynth.agents.painter.genetics import cells, gametes
from cadsynth.agents.sim.sciences import FAILURES, ordered_choice, titled
from cadsynth.agents.sim.world import DESCRIBERS, Draft, _join, _num_kind, _nums, _template, _texts
from cadsynth.specs import ImageSpec, PunnettSquare, Trait, fmt_number


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
        parent1=p1, parent2=p2, title=titled(rng, "A genetic cross", "Punnett square", "A cross", "Offspring of a cross"),
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
    choices, letter, others = ordered_choice(g, _texts(g, pool))
    return Draft(
        x.spec, f"Which genotype fills exactly {n} of the {len(square)} boxes of the square?", "choice", letter, others,
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


DESCRIBERS["punnett_square"] = _describe_punnett  # type: ignore[assignment]
FAILURES["punnett_square"] = _break_punnett
