"""The simulator's procedural world: problems whose true answers are computed from the image spec.

Each template builds a spec, a question about it, the truth, plausible wrong answers and a worked
solution from a `level` in 0..1 (more elements, decimals, extra steps). `World.evolve` applies the
CAD-Generate meta-strategies by choosing which template to use next and at what level.
Everything random comes from the caller's rng, so a seed replays a run exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence, cast

from cadsynth.specs import (
    ColorName,
    Bar,
    BarChart,
    GeometryFigure,
    ImageSpec,
    LineChart,
    PieChart,
    Series,
    Shape,
    ShapeScene,
    Slice,
    Table,
    fmt_number,
    percent_labels,
)
from cadsynth.domain import CAPABILITIES, AnswerType, Capability, Strategy

__all__ = ["Problem", "Template", "TEMPLATES", "World"]


@dataclass(frozen=True)
class Problem:
    spec: ImageSpec
    question: str
    answer_type: AnswerType
    choices: list[str] | None
    truth: str
    distractors: list[str]
    capabilities: tuple[Capability, ...]
    difficulty: float
    solution: str
    visual_prompt: str
    template: str
    kind: str


@dataclass
class Draft:
    """What a template produces before the world scores its difficulty."""

    spec: ImageSpec
    question: str
    answer_type: AnswerType
    truth: str
    distractors: list[str]
    solution: str
    load: float  # element count (or number size), normalised 0..1
    precision: bool = False  # decimals in the arithmetic
    steps: int = 0  # arithmetic steps beyond reading values off the image
    choices: list[str] | None = None


@dataclass(frozen=True)
class Template:
    id: str
    kind: str
    family: str  # reasoning structure shared across kinds, for isomorphic transfer
    caps: tuple[Capability, ...]
    base: float  # difficulty floor before load, precision and steps
    make: Callable[[random.Random, float], Draft]
    inverse: tuple[str, ...] = ()  # where logic_reversion goes from here
    reverse: bool = False  # asks for the input given the result

    @property
    def floor(self) -> float:
        return self.base + 0.07 * (len(self.caps) - 1)


TEMPLATES: dict[str, Template] = {}


def _template(
    id: str, kind: str, family: str, caps: tuple[Capability, ...], base: float,
    inverse: tuple[str, ...] = (), reverse: bool = False,
) -> Callable[[Callable[[random.Random, float], Draft]], Callable[[random.Random, float], Draft]]:
    def register(make: Callable[[random.Random, float], Draft]) -> Callable[[random.Random, float], Draft]:
        TEMPLATES[id] = Template(id, kind, family, caps, base, make, inverse, reverse)
        return make

    return register


# --- vocabulary --------------------------------------------------------------------------------

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
FRUITS = ["Apple", "Banana", "Cherry", "Grape", "Lemon", "Mango", "Orange", "Peach", "Pear", "Plum", "Kiwi", "Melon"]
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Delhi", "Tokyo", "Rome", "Quito", "Seoul", "Dakar", "Perth", "Riga"]
NAMES = ["Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kira", "Liam"]
PRODUCTS = ["Pens", "Mugs", "Caps", "Bags", "Lamps", "Books", "Socks", "Shirts", "Clocks", "Plates", "Kites", "Maps"]
TEAMS = ["Lions", "Hawks", "Bears", "Wolves", "Sharks", "Eagles", "Tigers", "Foxes", "Owls", "Bulls", "Rams", "Jets"]
# Colours a person names without hesitation; scenes and colour questions use only these.
NAMED = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"]
LETTERS = "ABCD"

# (title, x axis, y axis, categories, categories keep their order)
BAR_THEMES = [
    ("Fruit sold at a market stall", "Fruit", "Kilograms", FRUITS, False),
    ("Books borrowed from the library", "Month", "Books", MONTHS, True),
    ("Visitors by city", "City", "Visitors (thousands)", CITIES, False),
    ("Goals scored this season", "Team", "Goals", TEAMS, False),
    ("Units sold by product", "Product", "Units", PRODUCTS, False),
]
# (title, period word, x labels, y axis, series names)
LINE_THEMES = [
    ("Average temperature", "month", MONTHS, "Degrees", ["Oslo", "Rome", "Cairo"]),
    ("Website visits", "week", [f"Week {i}" for i in range(1, 13)], "Visits (hundreds)", ["Shop", "Blog", "Forum"]),
    ("Club membership", "year", [str(y) for y in range(2013, 2025)], "Members", ["Chess", "Drama", "Choir"]),
    ("Monthly sales", "month", MONTHS, "Units", ["North", "South", "East"]),
]
# (title, categories, unit)
PIE_THEMES = [
    ("How students get to school", ["Bus", "Walk", "Car", "Bike", "Train", "Scooter", "Tram", "Ferry"], "students"),
    ("Monthly household budget", ["Rent", "Food", "Travel", "Savings", "Bills", "Fun", "Health", "Gifts"], "dollars"),
    ("Favourite sport in a survey", ["Soccer", "Tennis", "Swimming", "Cycling", "Running", "Hockey", "Golf", "Rugby"], "people"),
    ("Trees in the park", ["Oak", "Pine", "Birch", "Maple", "Elm", "Ash", "Willow", "Cedar"], "trees"),
]
# (title, entity header, entity plural, entities, numeric columns, value range)
TABLE_THEMES = [
    ("Test scores", "Student", "students", NAMES, ["Math", "Science", "English", "History", "Art"], (40, 100)),
    ("Units sold per quarter", "Store", "stores", CITIES, ["Q1", "Q2", "Q3", "Q4"], (10, 99)),
    ("Rainfall (mm)", "City", "cities", CITIES, MONTHS[:5], (5, 150)),
    ("Goals per season", "Team", "teams", TEAMS, ["2020", "2021", "2022", "2023", "2024"], (10, 80)),
]
TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (12, 16, 20), (9, 12, 15)]
# Filled area of each shape as a fraction of its bounding square (see painter render).
SHAPE_AREA = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5, "hexagon": 3 * math.sqrt(3) / 8, "star": 0.33}
SHAPE_NAMES = list(SHAPE_AREA)


# --- small helpers -----------------------------------------------------------------------------


def _count(rng: random.Random, level: float, lo: int, hi: int) -> tuple[int, float]:
    """An element count that grows with level (with a little jitter) and its load 0..1."""
    n = lo + round(level * (hi - lo)) + rng.choice((-1, 0, 0, 1))
    n = max(lo, min(hi, n))
    return n, (n - lo) / (hi - lo) if hi > lo else 0.0


def _decimals(rng: random.Random, level: float) -> bool:
    return level > 0.5 and rng.random() < level


def _values(rng: random.Random, n: int, decimals: bool, lo: int = 5, hi: int = 95) -> list[float]:
    """n distinct values; tenths when decimals."""
    if decimals:
        return [v / 10 for v in rng.sample(range(lo * 10, hi * 10 + 1), n)]
    return [float(v) for v in rng.sample(range(lo, hi + 1), n)]


def _num_kind(*values: float) -> AnswerType:
    return "integer" if all(abs(v - round(v)) < 1e-9 for v in values) else "number"


def _nums(truth: float, candidates: Iterable[float], step: float = 1.0) -> list[str]:
    """Distinct plausible wrong numbers: the candidates first, then near misses of the truth."""
    t = fmt_number(truth)
    out: list[str] = []
    for c in [*candidates, truth + step, truth - step, truth + 2 * step, truth + 10 * step]:
        s = fmt_number(c)
        if s != t and s not in out:
            out.append(s)
    return out[:4]


def _texts(truth: str, candidates: Iterable[str], pool: Iterable[str] = ()) -> list[str]:
    out: list[str] = []
    for c in [*candidates, *pool]:
        if c != truth and c not in out:
            out.append(c)
    return out[:4]


def _choice(rng: random.Random, correct: str, wrong: list[str]) -> tuple[list[str], str, list[str]]:
    """Four shuffled options; returns (options, letter of correct, letters of the wrong ones)."""
    options = [correct, *wrong[:3]]
    order = list(range(4))
    rng.shuffle(order)
    shown = [options[i] for i in order]
    letter = LETTERS[order.index(0)]
    return shown, letter, [LETTERS[order.index(i)] for i in (1, 2, 3)]


def _gap_threshold(rng: random.Random, low: float, high: float) -> float:
    """A round-looking threshold strictly between two neighbouring values."""
    ints = [v for v in range(math.floor(low) + 1, math.ceil(high)) if low < v < high]
    fives = [v for v in ints if v % 5 == 0]
    if fives or ints:
        return float(rng.choice(fives or ints))
    return round((low + high) / 2, 2)


def _threshold_for(rng: random.Random, values: list[float], count: int) -> float:
    """A threshold with exactly `count` values above it."""
    desc = sorted(values, reverse=True)
    high = desc[count - 1] if count > 0 else desc[0] + 10
    low = desc[count] if count < len(desc) else max(0.0, desc[-1] - 10)
    return _gap_threshold(rng, low, high)


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --- bar charts --------------------------------------------------------------------------------


@dataclass
class _Bars:
    spec: BarChart
    labels: list[str]
    values: list[float]
    decimals: bool
    load: float
    colors: list[str] = field(default_factory=list)

    @property
    def step(self) -> float:
        return 0.1 if self.decimals else 1.0


def _bars(rng: random.Random, level: float, lo: int = 4, hi: int = 12, colored: bool = False) -> _Bars:
    title, xl, yl, pool, ordered = rng.choice(BAR_THEMES)
    n, load = _count(rng, level, lo, hi)
    if ordered:
        start = rng.randint(0, len(pool) - n)
        labels = pool[start : start + n]
    else:
        labels = rng.sample(pool, n)
    dec = _decimals(rng, level)
    values = _values(rng, n, dec)
    colors = rng.sample(NAMED, n) if colored else []
    bars = [Bar(label=l, value=v, color=cast(ColorName, colors[i]) if colored else None) for i, (l, v) in enumerate(zip(labels, values))]
    return _Bars(BarChart(title=title, x_label=xl, y_label=yl, bars=bars), labels, values, dec, load, colors)


@_template("bar.lookup", "bar_chart", "lookup", ("text_recognition",), 0.05, inverse=("bar.which_value",))
def _bar_lookup(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    i = rng.randrange(len(b.values))
    v = b.values[i]
    near = [b.values[j] for j in (i - 1, i + 1) if 0 <= j < len(b.values)]
    return Draft(
        b.spec, f"What value does the bar for {b.labels[i]} show?", _num_kind(v), fmt_number(v),
        _nums(v, near, b.step), f"Find the bar labelled {b.labels[i]}; the number printed above it is {fmt_number(v)}.",
        b.load, b.decimals,
    )


@_template("bar.which_value", "bar_chart", "reverse_lookup", ("text_recognition",), 0.1, inverse=("bar.lookup",), reverse=True)
def _bar_which_value(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    i = rng.randrange(len(b.values))
    v = b.values[i]
    closest = sorted(range(len(b.values)), key=lambda j: (abs(b.values[j] - v), j))
    near = [b.labels[j] for j in (i - 1, i + 1) if 0 <= j < len(b.labels)] + [b.labels[j] for j in closest]
    return Draft(
        b.spec, f"Which category's bar shows a value of exactly {fmt_number(v)}?", "text", b.labels[i],
        _texts(b.labels[i], near), f"Scan the values printed above the bars; {fmt_number(v)} sits above {b.labels[i]}.",
        b.load, b.decimals,
    )


@_template("bar.diff", "bar_chart", "difference", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("bar.partner",))
def _bar_diff(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    i, j = _two_desc(rng, b.values)
    va, vb = b.values[i], b.values[j]
    d = va - vb
    return Draft(
        b.spec, f"How much greater is the value for {b.labels[i]} than the value for {b.labels[j]}?",
        _num_kind(d), fmt_number(d), _nums(d, [va + vb, va, vb], b.step),
        f"{b.labels[i]} shows {fmt_number(va)} and {b.labels[j]} shows {fmt_number(vb)}; "
        f"{fmt_number(va)} - {fmt_number(vb)} = {fmt_number(d)}.",
        b.load, b.decimals, 1,
    )


def _two_desc(rng: random.Random, values: list[float]) -> tuple[int, int]:
    """Two distinct indices, the larger value first."""
    i, j = rng.sample(range(len(values)), 2)
    return (i, j) if values[i] > values[j] else (j, i)


@_template("bar.partner", "bar_chart", "reverse_difference", ("text_recognition", "numeric_reasoning"), 0.3, inverse=("bar.diff",), reverse=True)
def _bar_partner(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    i, j = _two_desc(rng, b.values)
    d = b.values[i] - b.values[j]
    below = [k for k, v in enumerate(b.values) if abs(v - (b.values[j] - d)) < 1e-9]
    closest = sorted(range(len(b.values)), key=lambda k: (abs(b.values[k] - b.values[i]), k))
    wrong = [b.labels[k] for k in below] + [b.labels[j]] + [b.labels[k] for k in closest]
    return Draft(
        b.spec, f"Which category's value is exactly {fmt_number(d)} more than the value for {b.labels[j]}?",
        "text", b.labels[i], _texts(b.labels[i], wrong),
        f"{b.labels[j]} shows {fmt_number(b.values[j])}; {fmt_number(b.values[j])} + {fmt_number(d)} = "
        f"{fmt_number(b.values[i])}, which is the value of {b.labels[i]}.",
        b.load, b.decimals, 1,
    )


@_template("bar.sum", "bar_chart", "sum", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("bar.partner",))
def _bar_sum(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    m = 3 if level > 0.5 else 2
    idx = rng.sample(range(len(b.values)), m)
    vs = [b.values[k] for k in idx]
    total = math.fsum(vs)
    other = next(k for k in range(len(b.values)) if k not in idx)
    names = [b.labels[k] for k in idx]
    return Draft(
        b.spec, f"What is the combined value of {_join(names)}?", _num_kind(total), fmt_number(total),
        _nums(total, [total - vs[-1], total - vs[0] + b.values[other], max(vs)], b.step),
        f"Read {', '.join(f'{n} = {fmt_number(v)}' for n, v in zip(names, vs))}; "
        f"{' + '.join(fmt_number(v) for v in vs)} = {fmt_number(total)}.",
        b.load, b.decimals, m - 1,
    )


@_template("bar.argmax", "bar_chart", "argmax", ("spatial_recognition", "text_recognition"), 0.1, inverse=("bar.which_value",))
def _bar_argmax(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    order = sorted(range(len(b.values)), key=lambda k: -b.values[k])
    if level < 0.4:
        word, ranked = "tallest", order
    elif level < 0.7:
        word, ranked = "shortest", order[::-1]
    else:
        word, ranked = "second tallest", [order[1], order[0], order[2], order[3]]
    correct, wrong = b.labels[ranked[0]], [b.labels[k] for k in ranked[1:4]]
    options, letter, others = _choice(rng, correct, wrong)
    return Draft(
        b.spec, f"Which category has the {word} bar?", "choice", letter, others,
        f"Compare the bar heights (values {', '.join(fmt_number(b.values[k]) for k in order[:4])} are the largest); "
        f"the {word} bar is {correct} ({fmt_number(b.values[ranked[0]])}), option {letter}.",
        b.load, False, 1 if word == "second tallest" else 0, options,
    )


@_template("bar.count_above", "bar_chart", "count_threshold", ("counting", "numeric_reasoning"), 0.2, inverse=("bar.threshold",))
def _bar_count_above(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    n = len(b.values)
    c = rng.randint(1, n - 1)
    t = _threshold_for(rng, b.values, c)
    above = [b.labels[k] for k in range(n) if b.values[k] > t]
    return Draft(
        b.spec, f"How many bars have a value greater than {fmt_number(t)}?", "integer", str(c),
        _nums(c, [c + 1, c - 1, n - c]), f"Bars above {fmt_number(t)}: {', '.join(above)}; that is {c} bars.",
        b.load, b.decimals,
    )


@_template("bar.threshold", "bar_chart", "reverse_count", ("counting", "numeric_reasoning"), 0.3, inverse=("bar.count_above",), reverse=True)
def _bar_threshold(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level)
    n = len(b.values)
    c = rng.randint(1, n - 1)
    others = sorted((k for k in range(n + 1) if k != c), key=lambda k: (abs(k - c), k))[:3]
    counts = [c, *others]
    ts = [_threshold_for(rng, b.values, k) for k in counts]
    options = [fmt_number(t) for t in sorted(ts)]  # thresholds read best in ascending order
    letter = LETTERS[options.index(fmt_number(ts[0]))]
    wrong = [LETTERS[options.index(fmt_number(t))] for t in ts[1:]]
    return Draft(
        b.spec, f"Exactly {c} bars have a value greater than which of these thresholds?", "choice", letter, wrong,
        f"Count bars above each option; only {fmt_number(ts[0])} leaves exactly {c} bars above it (option {letter}).",
        b.load, b.decimals, 1, options,
    )


@_template("bar.color_diff", "bar_chart", "difference", ("color", "text_recognition", "numeric_reasoning"), 0.2, inverse=("bar.partner",))
def _bar_color_diff(rng: random.Random, level: float) -> Draft:
    b = _bars(rng, level, 3, 8, colored=True)
    i, j = rng.sample(range(len(b.values)), 2)
    if level < 0.6 and b.values[i] < b.values[j]:
        i, j = j, i  # negative answers only at higher levels
    vi, vj = b.values[i], b.values[j]
    d = vi - vj
    return Draft(
        b.spec, f"What is the value of the {b.colors[i]} bar minus the value of the {b.colors[j]} bar?",
        _num_kind(d), fmt_number(d), _nums(d, [vj - vi, vi + vj, vi], b.step),
        f"The {b.colors[i]} bar ({b.labels[i]}) shows {fmt_number(vi)}, the {b.colors[j]} bar ({b.labels[j]}) "
        f"shows {fmt_number(vj)}; {fmt_number(vi)} - {fmt_number(vj)} = {fmt_number(d)}.",
        b.load, b.decimals, 1,
    )


# --- line charts -------------------------------------------------------------------------------


@dataclass
class _Lines:
    spec: LineChart
    xs: list[str]
    names: list[str]
    values: list[list[float]]
    period: str
    decimals: bool
    load: float

    @property
    def step(self) -> float:
        return 0.1 if self.decimals else 1.0


def _walk(rng: random.Random, n: int, lo: int, hi: int, jump: int) -> list[int]:
    v = rng.randint(lo, hi)
    out = []
    for _ in range(n):
        out.append(v)
        v = max(lo, min(hi, v + rng.randint(-jump, jump)))
    return out


def _lines(rng: random.Random, level: float, n_series: int, banded: bool = True, show: bool = True) -> _Lines:
    title, period, pool, yl, names = rng.choice(LINE_THEMES)
    n, load = _count(rng, level, 5, 12)
    start = rng.randint(0, len(pool) - n)
    xs = pool[start : start + n]
    dec = _decimals(rng, level)
    names = rng.sample(names, n_series)
    values: list[list[float]] = []
    for j in range(n_series):
        # Separate bands keep each series' printed values clear of the other lines.
        lo = 10 + 40 * j if banded else 20
        walk = _walk(rng, n, lo, lo + (25 if banded else 60), 6 if banded else 12)
        values.append([w + (rng.randint(0, 9) / 10 if dec else 0) for w in walk])
    if n_series == 1:
        title = f"{title}: {names[0]}"
    series = [
        Series(name=nm, values=vs, color=("blue", "orange", "green")[j], show_values=show)
        for j, (nm, vs) in enumerate(zip(names, values))
    ]
    spec = LineChart(title=title, x_label=period.capitalize(), y_label=yl, x_labels=xs, series=series)
    return _Lines(spec, xs, names, values, period, dec, load)


def _unique_index(rng: random.Random, values: list[float]) -> int | None:
    singles = [i for i, v in enumerate(values) if values.count(v) == 1]
    return rng.choice(singles) if singles else None


@_template("line.value_at", "line_chart", "lookup", ("color", "text_recognition"), 0.1, inverse=("line.when_value",))
def _line_value_at(rng: random.Random, level: float) -> Draft:
    ln = _lines(rng, level, 2 if level < 0.5 else 3)
    j, i = rng.randrange(len(ln.names)), rng.randrange(len(ln.xs))
    v = ln.values[j][i]
    near = [ln.values[k][i] for k in range(len(ln.names)) if k != j]
    near += [ln.values[j][k] for k in (i - 1, i + 1) if 0 <= k < len(ln.xs)]
    return Draft(
        ln.spec, f"What was the value for {ln.names[j]} in {ln.xs[i]}?", _num_kind(v), fmt_number(v),
        _nums(v, near, ln.step),
        f"The legend gives {ln.names[j]}'s line colour; above its point at {ln.xs[i]} the value is {fmt_number(v)}.",
        ln.load, ln.decimals,
    )


@_template("line.when_value", "line_chart", "reverse_lookup", ("color", "text_recognition"), 0.15, inverse=("line.value_at",), reverse=True)
def _line_when_value(rng: random.Random, level: float) -> Draft:
    while True:
        ln = _lines(rng, level, 2 if level < 0.5 else 3)
        j = rng.randrange(len(ln.names))
        i = _unique_index(rng, ln.values[j])
        if i is not None:
            break
    v = ln.values[j][i]
    near = [ln.xs[k] for k in (i - 1, i + 1) if 0 <= k < len(ln.xs)]
    closest = sorted(range(len(ln.xs)), key=lambda k: (abs(ln.values[j][k] - v), k))
    return Draft(
        ln.spec, f"In which {ln.period} was the value for {ln.names[j]} exactly {fmt_number(v)}?", "text", ln.xs[i],
        _texts(ln.xs[i], near + [ln.xs[k] for k in closest], ln.xs),
        f"Follow {ln.names[j]}'s line (colour from the legend); the point labelled {fmt_number(v)} is at {ln.xs[i]}.",
        ln.load, ln.decimals,
    )


@_template("line.change", "line_chart", "difference", ("text_recognition", "numeric_reasoning"), 0.2, inverse=("line.when_value",))
def _line_change(rng: random.Random, level: float) -> Draft:
    ln = _lines(rng, level, 1)
    a, b = sorted(rng.sample(range(len(ln.xs)), 2))
    va, vb = ln.values[0][a], ln.values[0][b]
    d = vb - va
    return Draft(
        ln.spec,
        f"By how much did the value change from {ln.xs[a]} to {ln.xs[b]}? Give a negative number for a decrease.",
        _num_kind(d), fmt_number(d), _nums(d, [va - vb, vb, va, vb + va], ln.step),
        f"{ln.xs[a]} shows {fmt_number(va)} and {ln.xs[b]} shows {fmt_number(vb)}; "
        f"{fmt_number(vb)} - {fmt_number(va)} = {fmt_number(d)}.",
        ln.load, ln.decimals, 1,
    )


@_template("line.argmax", "line_chart", "argmax", ("spatial_recognition", "text_recognition"), 0.12, inverse=("line.value_at",))
def _line_argmax(rng: random.Random, level: float) -> Draft:
    while True:
        ln = _lines(rng, level, 1, show=level < 0.5)
        vs = ln.values[0]
        high = level < 0.7
        best = max(vs) if high else min(vs)
        if vs.count(best) == 1:
            break
    i = vs.index(best)
    order = sorted(range(len(vs)), key=lambda k: -vs[k] if high else vs[k])
    near = [ln.xs[k] for k in (i - 1, i + 1) if 0 <= k < len(vs)]
    word = "highest" if high else "lowest"
    return Draft(
        ln.spec, f"In which {ln.period} was the value at its {word}?", "text", ln.xs[i],
        _texts(ln.xs[i], [ln.xs[order[1]], *near, ln.xs[order[-1]]], ln.xs),
        f"The {word} point of the line is at {ln.xs[i]} ({fmt_number(best)}).",
        ln.load, False,
    )


@_template("line.above_count", "line_chart", "count_threshold", ("color", "counting", "spatial_relationship"), 0.25, inverse=("line.when_value",))
def _line_above_count(rng: random.Random, level: float) -> Draft:
    ln = _lines(rng, level, 2, banded=False, show=False)
    a = ln.values[0]
    # Keep the lines a visible gap apart at every point, crossing now and then.
    sign, b = rng.choice((-1, 1)), []
    for v in a:
        if rng.random() < 0.35:
            sign = -sign
        b.append(round(v + sign * rng.randint(4, 14) + (rng.randint(0, 9) / 10 if ln.decimals else 0), 1))
    ln.values[1] = b
    ln.spec.series[1].values = b
    n = len(a)
    c = sum(1 for x, y in zip(a, b) if x > y)
    return Draft(
        ln.spec, f"In how many of the {n} {ln.period}s was {ln.names[0]} higher than {ln.names[1]}?", "integer", str(c),
        _nums(c, [n - c, c + 1, c - 1]),
        f"Compare the {ln.spec.series[0].color} line ({ln.names[0]}) with the {ln.spec.series[1].color} line "
        f"({ln.names[1]}) at each {ln.period}; it is higher at "
        f"{_join([x for x, p, q in zip(ln.xs, a, b) if p > q]) if c else 'none of them'}: {c}.",
        ln.load, False,
    )


# --- pie charts --------------------------------------------------------------------------------


@dataclass
class _Pie:
    spec: PieChart
    labels: list[str]
    pcts: list[int]
    colors: list[str]
    unit: str
    load: float


def _pie(rng: random.Random, level: float) -> _Pie:
    title, pool, unit = rng.choice(PIE_THEMES)
    n, load = _count(rng, level, 3, 8)
    while True:  # distinct whole percentages of at least 4, so printed shares are exact and unambiguous
        weights = [rng.randint(2, 14) for _ in range(n)]
        raw = [100 * w / sum(weights) for w in weights]
        pcts = [math.floor(r) for r in raw]
        for k in sorted(range(n), key=lambda k: (pcts[k] - raw[k], k))[: 100 - sum(pcts)]:
            pcts[k] += 1
        if min(pcts) >= 4 and len(set(pcts)) == n:
            break
    factor = rng.choice((1, 2, 3, 5))
    labels = rng.sample(pool, n)
    colors = rng.sample(NAMED, n)
    slices = [Slice(label=l, value=p * factor, color=cast(ColorName, c)) for l, p, c in zip(labels, pcts, colors)]
    return _Pie(PieChart(title=title, slices=slices), labels, pcts, colors, unit, load)


def _pie_neighbours(p: _Pie, i: int) -> list[int]:
    n = len(p.pcts)
    return [(i - 1) % n, (i + 1) % n] + sorted(range(n), key=lambda k: (abs(p.pcts[k] - p.pcts[i]), k))


@_template("pie.percent", "pie_chart", "lookup", ("color", "text_recognition"), 0.05, inverse=("pie.which_share",))
def _pie_percent(rng: random.Random, level: float) -> Draft:
    p = _pie(rng, level)
    i = rng.randrange(len(p.pcts))
    return Draft(
        p.spec, f"What percentage of the total is {p.labels[i]}? Answer with the number only.", "integer",
        str(p.pcts[i]), _nums(p.pcts[i], [p.pcts[k] for k in _pie_neighbours(p, i)] + [100 - p.pcts[i]]),
        f"The legend shows {p.labels[i]} in {p.colors[i]}; the {p.colors[i]} slice is labelled {p.pcts[i]}%.",
        p.load,
    )


@_template("pie.which_share", "pie_chart", "reverse_lookup", ("color", "text_recognition"), 0.12, inverse=("pie.percent",), reverse=True)
def _pie_which_share(rng: random.Random, level: float) -> Draft:
    p = _pie(rng, level)
    if len(p.pcts) < 4:
        p = _pie(rng, 0.5)
    i = rng.randrange(len(p.pcts))
    wrong = _texts(p.labels[i], [p.labels[k] for k in _pie_neighbours(p, i)])
    options, letter, others = _choice(rng, p.labels[i], wrong)
    return Draft(
        p.spec, f"Which category makes up exactly {p.pcts[i]}% of the total?", "choice", letter, others,
        f"The slice labelled {p.pcts[i]}% is {p.colors[i]}, which the legend names {p.labels[i]} (option {letter}).",
        p.load, choices=options,
    )


@_template("pie.largest", "pie_chart", "argmax", ("color", "spatial_recognition"), 0.08, inverse=("pie.which_share",))
def _pie_largest(rng: random.Random, level: float) -> Draft:
    p = _pie(rng, level)
    if len(p.pcts) < 4:
        p = _pie(rng, 0.5)
    big = level < 0.5
    order = sorted(range(len(p.pcts)), key=lambda k: -p.pcts[k] if big else p.pcts[k])
    word = "largest" if big else "smallest"
    options, letter, others = _choice(rng, p.labels[order[0]], [p.labels[k] for k in order[1:4]])
    return Draft(
        p.spec, f"Which category has the {word} slice?", "choice", letter, others,
        f"The {word} slice is the {p.colors[order[0]]} one ({p.pcts[order[0]]}%); the legend names it "
        f"{p.labels[order[0]]} (option {letter}).",
        p.load, choices=options,
    )


@_template("pie.amount", "pie_chart", "scale", ("color", "text_recognition", "numeric_reasoning"), 0.2, inverse=("pie.total",))
def _pie_amount(rng: random.Random, level: float) -> Draft:
    p = _pie(rng, level)
    dec = level > 0.5
    total = rng.choice((240, 360, 450, 750, 1250) if dec else (200, 400, 500, 800, 1000, 1200, 2000))
    i = rng.randrange(len(p.pcts))
    amount = total * p.pcts[i] / 100
    near = [total * p.pcts[k] / 100 for k in _pie_neighbours(p, i)[:2]]
    return Draft(
        p.spec, f"The chart shares out {total} {p.unit}. How many {p.unit} are in {p.labels[i]}?",
        _num_kind(amount), fmt_number(amount), _nums(amount, [*near, total - amount, p.pcts[i]]),
        f"{p.labels[i]} (the {p.colors[i]} slice) is {p.pcts[i]}%; {p.pcts[i]}% of {total} = "
        f"{total} x {p.pcts[i]} / 100 = {fmt_number(amount)}.",
        p.load, _num_kind(amount) == "number", 1,
    )


@_template("pie.total", "pie_chart", "reverse_scale", ("color", "text_recognition", "numeric_reasoning"), 0.3, inverse=("pie.amount",), reverse=True)
def _pie_total(rng: random.Random, level: float) -> Draft:
    p = _pie(rng, level)
    total = rng.choice((200, 300, 400, 500, 600, 800, 1000, 1500, 2000))
    i = rng.randrange(len(p.pcts))
    part = total * p.pcts[i] // 100
    k = _pie_neighbours(p, i)[0]
    near = [part * 100 / p.pcts[k], total - part, part * (100 - p.pcts[i]) / p.pcts[i], total + 100]
    return Draft(
        p.spec, f"{p.labels[i]} stands for {part} {p.unit}. How many {p.unit} does the whole chart stand for?",
        "integer", str(total), _nums(total, near, 100),
        f"{p.labels[i]} (the {p.colors[i]} slice) is {p.pcts[i]}%, so {p.pcts[i]}% = {part}; "
        f"the whole is {part} x 100 / {p.pcts[i]} = {total}.",
        p.load, False, 2,
    )


# --- tables ------------------------------------------------------------------------------------


@dataclass
class _Table:
    spec: Table
    entities: list[str]
    cols: list[str]
    values: list[list[float]]  # [row][numeric column]
    entity: str
    plural: str
    decimals: bool
    load: float

    @property
    def step(self) -> float:
        return 0.1 if self.decimals else 1.0


def _table(rng: random.Random, level: float, total: bool = False, min_rows: int = 3) -> _Table:
    title, entity, plural, pool, cols_pool, (lo, hi) = rng.choice(TABLE_THEMES)
    n, load_r = _count(rng, level, min_rows, 10)
    m, load_c = _count(rng, level, 2, min(4 if total else 5, len(cols_pool)))
    entities = rng.sample(pool, n)
    cols = cols_pool[:m]
    dec = _decimals(rng, level)
    by_col = [_values(rng, n, dec, lo, hi) for _ in range(m)]  # distinct within each column
    values = [[by_col[c][r] for c in range(m)] for r in range(n)]
    header = [entity, *cols] + (["Total"] if total else [])
    rows: list[list[int | float | str]] = []
    for e, vs in zip(entities, values):
        row: list[int | float | str] = [e, *(_cell(v) for v in vs)]
        if total:
            row.append(_cell(math.fsum(vs)))
        rows.append(row)
    spec = Table(title=title, columns=header, rows=rows)
    return _Table(spec, entities, cols, values, entity.lower(), plural, dec, (load_r + load_c) / 2)


def _cell(v: float) -> int | float:
    r = round(v, 2)
    return int(r) if r == int(r) else r


@_template("table.lookup", "table", "lookup", ("text_recognition",), 0.08, inverse=("table.which_row",))
def _table_lookup(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level)
    r, c = rng.randrange(len(t.entities)), rng.randrange(len(t.cols))
    v = t.values[r][c]
    near = [t.values[r][k] for k in (c - 1, c + 1) if 0 <= k < len(t.cols)]
    near += [t.values[k][c] for k in (r - 1, r + 1) if 0 <= k < len(t.entities)]
    return Draft(
        t.spec, f"In the table, what is the {t.cols[c]} value for {t.entities[r]}?", _num_kind(v), fmt_number(v),
        _nums(v, near, t.step), f"Go to the {t.entities[r]} row and the {t.cols[c]} column: {fmt_number(v)}.",
        t.load, t.decimals,
    )


@_template("table.which_row", "table", "reverse_lookup", ("text_recognition",), 0.12, inverse=("table.lookup",), reverse=True)
def _table_which_row(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level, min_rows=4)  # room for three wrong rows
    r, c = rng.randrange(len(t.entities)), rng.randrange(len(t.cols))
    v = t.values[r][c]
    elsewhere = [t.entities[k] for k in range(len(t.entities)) for j in range(len(t.cols)) if j != c and t.values[k][j] == v]
    near = [t.entities[k] for k in (r - 1, r + 1) if 0 <= k < len(t.entities)]
    closest = sorted(range(len(t.entities)), key=lambda k: (abs(t.values[k][c] - v), k))
    return Draft(
        t.spec, f"Which {t.entity} has a {t.cols[c]} value of {fmt_number(v)}?", "text", t.entities[r],
        _texts(t.entities[r], elsewhere + near + [t.entities[k] for k in closest]),
        f"Scan the {t.cols[c]} column for {fmt_number(v)}; it is in the {t.entities[r]} row.",
        t.load, t.decimals,
    )


@_template("table.row_sum", "table", "sum", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("table.missing",))
def _table_row_sum(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level)
    r = rng.randrange(len(t.entities))
    vs = t.values[r]
    s = math.fsum(vs)
    other = t.values[(r + 1) % len(t.entities)]
    return Draft(
        t.spec, f"What is the sum of all the numbers in the {t.entities[r]} row?", _num_kind(s), fmt_number(s),
        _nums(s, [s - vs[-1], math.fsum(other), s - vs[0]], t.step),
        f"{t.entities[r]}: {' + '.join(fmt_number(v) for v in vs)} = {fmt_number(s)}.",
        t.load, t.decimals, len(vs) - 1,
    )


@_template("table.missing", "table", "missing", ("text_recognition", "numeric_reasoning"), 0.3, inverse=("table.row_sum",), reverse=True)
def _table_missing(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level, total=True)
    r, c = rng.randrange(len(t.entities)), rng.randrange(len(t.cols))
    t.spec.rows[r][1 + c] = "?"
    vs = t.values[r]
    s = math.fsum(vs)
    rest = [fmt_number(v) for k, v in enumerate(vs) if k != c]
    miss = vs[c]
    return Draft(
        t.spec, f"One cell in the {t.entities[r]} row is hidden by '?'. Using the Total column, what number belongs there?",
        _num_kind(miss), fmt_number(miss), _nums(miss, [s, s - miss - miss, miss + t.step * 10], t.step),
        f"The {t.entities[r]} total is {fmt_number(s)}; the other cells are {' + '.join(rest)} = "
        f"{fmt_number(s - miss)}; {fmt_number(s)} - {fmt_number(s - miss)} = {fmt_number(miss)}.",
        t.load, t.decimals, len(vs) - 1,
    )


@_template("table.count_cond", "table", "count_threshold", ("counting", "numeric_reasoning"), 0.2, inverse=("table.which_row",))
def _table_count_cond(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level)
    c = rng.randrange(len(t.cols))
    col = [row[c] for row in t.values]
    n = len(col)
    k = rng.randint(1, n - 1)
    thr = _threshold_for(rng, col, k)
    above = [e for e, v in zip(t.entities, col) if v > thr]
    return Draft(
        t.spec, f"How many {t.plural} have a {t.cols[c]} value above {fmt_number(thr)}?", "integer", str(k),
        _nums(k, [k + 1, k - 1, n - k]), f"In the {t.cols[c]} column, {_join(above)} exceed {fmt_number(thr)}: {k}.",
        t.load, t.decimals,
    )


@_template("table.argmax", "table", "argmax", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("table.which_row",))
def _table_argmax(rng: random.Random, level: float) -> Draft:
    t = _table(rng, level, min_rows=4)  # room for three wrong rows
    c = rng.randrange(len(t.cols))
    col = [row[c] for row in t.values]
    high = level < 0.6
    order = sorted(range(len(col)), key=lambda k: -col[k] if high else col[k])
    other_c = (c + 1) % len(t.cols)
    other_best = max(range(len(col)), key=lambda k: t.values[k][other_c])
    word = "highest" if high else "lowest"
    return Draft(
        t.spec, f"Which {t.entity} has the {word} {t.cols[c]} value?", "text", t.entities[order[0]],
        _texts(t.entities[order[0]], [t.entities[order[1]], t.entities[other_best], *(t.entities[k] for k in order[2:])]),
        f"The {t.cols[c]} column's {word} value is {fmt_number(col[order[0]])}, in the {t.entities[order[0]]} row.",
        t.load, t.decimals, 1,
    )


# --- geometry ----------------------------------------------------------------------------------


def _triple(rng: random.Random, level: float) -> tuple[int, int, int]:
    a, b, c = rng.choice(TRIPLES)
    k = 1 + int(level * 2.5 * rng.random())
    return (a * k, b * k, c * k) if rng.random() < 0.5 else (b * k, a * k, c * k)


def _unit(rng: random.Random) -> str:
    return rng.choice(("cm", "m", "in"))


@_template("geo.hypotenuse", "geometry", "pythagoras", ("geometric_reasoning", "numeric_reasoning"), 0.2, inverse=("geo.leg",))
def _geo_hypotenuse(rng: random.Random, level: float) -> Draft:
    u = _unit(rng)
    if level < 0.5:
        a, b, _ = _triple(rng, level)
        dec = False
    else:
        a, b = rng.sample(range(2, 10 + round(20 * level)), 2)
        dec = math.hypot(a, b) != round(math.hypot(a, b))
    c = round(math.hypot(a, b), 1)
    spec = GeometryFigure(
        figure="right_triangle", sides=[a, b], side_labels=[f"{a} {u}", f"{b} {u}", "?"], vertex_names=["A", "B", "C"]
    )
    q = "Triangle ABC has a right angle at B. How long is AC?" + (" Round to one decimal place." if dec else "")
    return Draft(
        spec, q, _num_kind(c), fmt_number(c), _nums(c, [a + b, a * a + b * b, round(math.sqrt(abs(a * a - b * b)), 1)]),
        f"AC is the hypotenuse: AC = sqrt({a}^2 + {b}^2) = sqrt({a * a + b * b}) = {fmt_number(c)} {u}.",
        min(1.0, max(a, b) / 40), dec, 2,
    )


@_template("geo.leg", "geometry", "missing", ("geometric_reasoning", "numeric_reasoning"), 0.3, inverse=("geo.hypotenuse",), reverse=True)
def _geo_leg(rng: random.Random, level: float) -> Draft:
    u = _unit(rng)
    b: float
    if level < 0.5:
        a, b, c = _triple(rng, level)
    else:
        c = rng.randint(8, 12 + round(20 * level))
        a = rng.randint(2, c - 2)
        b = math.sqrt(c * c - a * a)
    bb = round(b, 1)
    dec = abs(b - round(b)) > 1e-9  # 12.04 still needs the rounding instruction
    spec = GeometryFigure(
        figure="right_triangle", sides=[a, b], side_labels=[f"{a} {u}", "?", f"{c} {u}"], vertex_names=["A", "B", "C"]
    )
    q = "Triangle ABC has a right angle at B. How long is BC?" + (" Round to one decimal place." if dec else "")
    return Draft(
        spec, q, _num_kind(bb), fmt_number(bb), _nums(bb, [c - a, round(math.hypot(a, c), 1), c * c - a * a]),
        f"AC = {c} is the hypotenuse, so BC = sqrt({c}^2 - {a}^2) = sqrt({c * c - a * a}) = {fmt_number(bb)} {u}.",
        min(1.0, c / 40), dec, 2,
    )


@_template("geo.third_angle", "geometry", "angle_sum", ("geometric_reasoning",), 0.15, inverse=("geo.isosceles",))
def _geo_third_angle(rng: random.Random, level: float) -> Draft:
    dec = _decimals(rng, level)
    while True:
        a = rng.randint(20, 110) + (0.5 if dec else 0)
        b = rng.randint(20, 110)
        c = 180 - a - b
        if c >= 15:
            break
    angles = [a, b, c]
    rng.shuffle(angles)
    k = angles.index(c)
    names = ["A", "B", "C"]
    labels = [f"{fmt_number(x)}°" for x in angles]
    labels[k] = "?"
    spec = GeometryFigure(figure="triangle", angles=angles, angle_labels=labels, vertex_names=names)
    given = [x for i, x in enumerate(angles) if i != k]
    return Draft(
        spec, f"What is the size of angle {names[k]} in degrees?", _num_kind(c), fmt_number(c),
        _nums(c, [180 - given[0], 360 - a - b, a + b, 180 - given[1]]),
        f"Angles of a triangle add to 180°: 180 - {fmt_number(given[0])} - {fmt_number(given[1])} = {fmt_number(c)}.",
        level * 0.5, dec, 1,
    )


@_template("geo.isosceles", "geometry", "angle_sum", ("geometric_reasoning", "text_recognition"), 0.25, inverse=("geo.third_angle",), reverse=True)
def _geo_isosceles(rng: random.Random, level: float) -> Draft:
    apex = rng.randrange(30, 140, 2 if level < 0.5 else 1)
    base = (180 - apex) / 2
    leg = rng.randint(4, 12)
    bc = 2 * leg * math.sin(math.radians(apex / 2))
    u = _unit(rng)
    spec = GeometryFigure(
        figure="triangle", sides=[leg, bc, leg], side_labels=[f"{leg} {u}", "", f"{leg} {u}"],
        angle_labels=[f"{apex}°", "?", ""], vertex_names=["A", "B", "C"],
    )
    return Draft(
        spec, "Using the marked side lengths and angle, what is the size of angle B in degrees?",
        _num_kind(base), fmt_number(base), _nums(base, [180 - apex, apex, apex / 2, base + 10]),
        f"AB = AC = {leg} {u}, so the triangle is isosceles and angles B and C are equal: "
        f"B = (180 - {apex}) / 2 = {fmt_number(base)}.",
        level * 0.5, base != int(base), 2,
    )


@_template("geo.rect_area", "geometry", "area", ("geometric_reasoning", "numeric_reasoning"), 0.12, inverse=("geo.rect_side",))
def _geo_rect_area(rng: random.Random, level: float) -> Draft:
    dec = _decimals(rng, level)
    w = rng.randint(3, 6 + round(14 * level)) + (0.5 if dec else 0)
    h = rng.randint(2, 4 + round(8 * level))
    if w == h:
        w += 1
    u = _unit(rng)
    area, per = w * h, 2 * (w + h)
    ask_area = level >= 0.3
    truth, other = (area, per) if ask_area else (per, area)
    spec = GeometryFigure(
        figure="rectangle", sides=[w, h], side_labels=[f"{fmt_number(w)} {u}", f"{fmt_number(h)} {u}"],
        vertex_names=["A", "B", "C", "D"],
    )
    how = f"{fmt_number(w)} x {h}" if ask_area else f"2 x ({fmt_number(w)} + {h})"
    return Draft(
        spec, f"What is the {'area' if ask_area else 'perimeter'} of rectangle ABCD?", _num_kind(truth),
        fmt_number(truth), _nums(truth, [other, w + h, 2 * w + h]),
        f"Width AB = {fmt_number(w)}, height BC = {h}; {'area' if ask_area else 'perimeter'} = {how} = {fmt_number(truth)}.",
        level * 0.6, dec, 1,
    )


@_template("geo.rect_side", "geometry", "missing", ("geometric_reasoning", "numeric_reasoning"), 0.25, inverse=("geo.rect_area",), reverse=True)
def _geo_rect_side(rng: random.Random, level: float) -> Draft:
    w = rng.randint(3, 6 + round(14 * level))
    h = rng.randint(2, 4 + round(8 * level))
    u = _unit(rng)
    by_area = level < 0.6
    given = w * h if by_area else 2 * (w + h)
    note = f"Area = {given} square {u}" if by_area else f"Perimeter = {given} {u}"
    spec = GeometryFigure(
        figure="rectangle", sides=[w, h], side_labels=[f"{w} {u}", "?"], vertex_names=["A", "B", "C", "D"], note=note,
    )
    how = f"{given} / {w}" if by_area else f"{given} / 2 - {w}"
    return Draft(
        spec, "Using the value written under the rectangle, how long is side BC?", "integer", str(h),
        _nums(h, [given - w, given / 2 if not by_area else given - 2 * w, w, h + 2]),
        f"AB = {w}; {note.split(' =')[0].lower()} gives BC = {how} = {h} {u}.",
        level * 0.6, False, 1 if by_area else 2,
    )


@_template("geo.circle_area", "geometry", "area", ("geometric_reasoning", "numeric_reasoning"), 0.2, inverse=("geo.circle_radius",))
def _geo_circle_area(rng: random.Random, level: float) -> Draft:
    r = rng.randint(2, 5 + round(10 * level))
    u = _unit(rng)
    diameter = level > 0.6
    ask_area = rng.random() < 0.6
    area, circ = 314 * r * r / 100, 628 * r / 100  # pi = 3.14 keeps answers exact to two decimals
    truth = area if ask_area else circ
    spec = GeometryFigure(
        figure="circle", sides=[r], side_labels=[f"{'d' if diameter else 'r'} = {2 * r if diameter else r} {u}"],
        vertex_names=["O"], circle_segment="diameter" if diameter else "radius", note="Use pi = 3.14",
    )
    wrong = [circ if ask_area else area, 314 * 4 * r * r / 100 if ask_area else 628 * 2 * r / 100, 314 * r / 100]
    step = f"r = {2 * r} / 2 = {r}; " if diameter else f"r = {r}; "
    formula = f"area = 3.14 x {r} x {r}" if ask_area else f"circumference = 2 x 3.14 x {r}"
    return Draft(
        spec, f"What is the {'area' if ask_area else 'circumference'} of the circle? Use pi = 3.14.",
        _num_kind(truth), fmt_number(truth), _nums(truth, wrong), f"{step}{formula} = {fmt_number(truth)}.",
        min(1.0, r / 15), True, 2 + diameter,
    )


@_template("geo.circle_radius", "geometry", "missing", ("geometric_reasoning", "numeric_reasoning"), 0.3, inverse=("geo.circle_area",), reverse=True)
def _geo_circle_radius(rng: random.Random, level: float) -> Draft:
    r = rng.randint(2, 5 + round(10 * level))
    u = _unit(rng)
    by_area = level >= 0.4
    given = 314 * r * r / 100 if by_area else 628 * r / 100
    note = f"{'Area' if by_area else 'Circumference'} = {fmt_number(given)} {u}{' sq' if by_area else ''}; use pi = 3.14"
    spec = GeometryFigure(figure="circle", sides=[r], side_labels=["r = ?"], vertex_names=["O"], note=note)
    how = f"sqrt({fmt_number(given)} / 3.14) = sqrt({r * r})" if by_area else f"{fmt_number(given)} / (2 x 3.14)"
    return Draft(
        spec, "Using the value under the circle, what is the radius r?", "integer", str(r),
        _nums(r, [r * r if by_area else 2 * r, 2 * r, r + 1, r - 1]), f"r = {how} = {r} {u}.",
        min(1.0, r / 15), True, 2,
    )


# --- shape scenes ------------------------------------------------------------------------------


@dataclass
class _Item:
    row: int
    col: int
    shape: str
    color: str
    size: float = 0.0  # fraction of the shorter image side
    label: str | None = None

    @property
    def area(self) -> float:
        return SHAPE_AREA[self.shape] * self.size * self.size


def _grid(rng: random.Random, n: int) -> tuple[int, int, list[tuple[int, int]]]:
    cols = min(6, max(3, math.ceil(math.sqrt(n * 1.6))))
    rows = math.ceil(n / cols)
    cells = sorted(rng.sample(range(rows * cols), n))
    return rows, cols, [(c // cols, c % cols) for c in cells]


def _scene(rng: random.Random, items: list[_Item], rows: int, cols: int, w: int = 640, h: int = 480) -> ShapeScene:
    """Place items at their grid cells (a little jitter, never leaving the cell)."""
    cell = min(w / cols, h / rows) / min(w, h)
    shapes = []
    for it in items:
        if not it.size:
            it.size = round(cell * rng.uniform(0.45, 0.6), 4)
        jx, jy = rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
        x = round((it.col + 0.5 + jx) / cols, 4)
        y = round((it.row + 0.45 + jy) / rows, 4)
        shapes.append(Shape(shape=it.shape, color=it.color, x=x, y=y, size=it.size, label=it.label))  # type: ignore[arg-type]
    return ShapeScene(width=w, height=h, shapes=shapes)


def _random_items(rng: random.Random, cells: list[tuple[int, int]], colors: list[str], shapes: list[str]) -> list[_Item]:
    return [_Item(r, c, rng.choice(shapes), rng.choice(colors)) for r, c in cells]


def _palette(rng: random.Random, level: float, lo: int = 3, hi: int = 6) -> list[str]:
    return rng.sample(NAMED, lo + round(level * (hi - lo)))


@_template("shape.count_color", "shape_scene", "count_attr", ("color", "counting"), 0.05, inverse=("shape.which_count",))
def _shape_count_color(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 4, 20)
    rows, cols, cells = _grid(rng, n)
    items = _random_items(rng, cells, _palette(rng, level), SHAPE_NAMES)
    target = rng.choice(items).color
    k = sum(it.color == target for it in items)
    others = [sum(it.color == c for it in items) for c in NAMED if c != target and any(it.color == c for it in items)]
    return Draft(
        _scene(rng, items, rows, cols), f"How many {target} shapes are in the picture?", "integer", str(k),
        _nums(k, [k + 1, k - 1, *others, n - k]), f"Counting every {target} shape, whatever its form, gives {k}.",
        load,
    )


@_template("shape.count_shape", "shape_scene", "count_attr", ("shape", "counting"), 0.05, inverse=("shape.which_count",))
def _shape_count_shape(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 4, 20)
    rows, cols, cells = _grid(rng, n)
    items = _random_items(rng, cells, _palette(rng, level), rng.sample(SHAPE_NAMES, 3 + round(level * 2)))
    target = rng.choice(items).shape
    k = sum(it.shape == target for it in items)
    return Draft(
        _scene(rng, items, rows, cols), f"How many {target}s are in the picture?", "integer", str(k),
        _nums(k, [k + 1, k - 1, n - k]), f"Counting every {target}, whatever its colour, gives {k}.", load,
    )


@_template("shape.count_color_shape", "shape_scene", "count_attr", ("color", "shape", "counting"), 0.12, inverse=("shape.which_count",))
def _shape_count_color_shape(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 5, 20)
    rows, cols, cells = _grid(rng, n)
    # Few colours and forms so near-miss shapes (right colour, wrong form) are common.
    items = _random_items(rng, cells, _palette(rng, level, 2, 4), rng.sample(SHAPE_NAMES, 2 + round(level * 2)))
    pick = rng.choice(items)
    color, shape = pick.color, pick.shape
    k = sum(it.color == color and it.shape == shape for it in items)
    by_color = sum(it.color == color for it in items)
    by_shape = sum(it.shape == shape for it in items)
    return Draft(
        _scene(rng, items, rows, cols), f"How many {color} {shape}s are in the picture?", "integer", str(k),
        _nums(k, [by_color, by_shape, k + 1, k - 1]),
        f"There are {by_color} {color} shapes and {by_shape} {shape}s; the ones that are both number {k}.",
        load,
    )


@_template("shape.which_count", "shape_scene", "reverse_count", ("color", "counting"), 0.2, inverse=("shape.count_color",), reverse=True)
def _shape_which_count(rng: random.Random, level: float) -> Draft:
    colors = rng.sample(NAMED, 4)
    counts = rng.sample(range(1, 5 + round(level * 3)), 4)
    n = sum(counts)
    rows, cols, cells = _grid(rng, n)
    pool = [c for c, k in zip(colors, counts) for _ in range(k)]
    rng.shuffle(pool)
    items = [_Item(r, c, rng.choice(SHAPE_NAMES), col) for (r, c), col in zip(cells, pool)]
    i = rng.randrange(4)
    wrong = sorted((k for k in range(4) if k != i), key=lambda k: abs(counts[k] - counts[i]))
    options, letter, others = _choice(rng, colors[i], [colors[k] for k in wrong])
    return Draft(
        _scene(rng, items, rows, cols), f"Which colour appears on exactly {counts[i]} shapes?", "choice", letter, others,
        "Counts by colour: " + ", ".join(f"{c} {k}" for c, k in zip(colors, counts)) + f"; so {colors[i]} (option {letter}).",
        min(1.0, (n - 10) / 12), False, 1, options,
    )


def _neighbour_scene(rng: random.Random, level: float, dr: int, dc: int) -> tuple[list[_Item], _Item, _Item, int, int, float]:
    """A labelled anchor with an occupied neighbour cell at (dr, dc) from it."""
    while True:
        n, load = _count(rng, level, 5, 18)
        rows, cols, cells = _grid(rng, n)
        items = _random_items(rng, cells, _palette(rng, level, 4, 7), SHAPE_NAMES)
        at = {(it.row, it.col): it for it in items}
        anchors = [it for it in items if (it.row + dr, it.col + dc) in at]
        if anchors:
            break
    anchor = rng.choice(anchors)
    other = at[(anchor.row + dr, anchor.col + dc)]
    letters = iter("ABCDEFGH")
    for it in [anchor, *rng.sample([x for x in items if x is not anchor], min(len(items) - 1, 1 + round(level * 4)))]:
        it.label = next(letters)
    return items, anchor, other, rows, cols, load


def _around(items: list[_Item], it: _Item, attr: str) -> list[str]:
    at = {(x.row, x.col): x for x in items}
    near = [at[(it.row + dr, it.col + dc)] for dr, dc in ((0, 1), (0, -1), (-1, 0), (1, 0)) if (it.row + dr, it.col + dc) in at]
    return [getattr(x, attr) for x in near]


@_template("shape.left_of", "shape_scene", "relation", ("spatial_relationship", "color", "text_recognition"), 0.15, inverse=("shape.above",))
def _shape_left_of(rng: random.Random, level: float) -> Draft:
    items, anchor, other, rows, cols, load = _neighbour_scene(rng, level, 0, -1)
    wrong = [anchor.color, *_around(items, anchor, "color")]
    return Draft(
        _scene(rng, items, rows, cols),
        f"What colour is the shape immediately to the left of the shape labelled {anchor.label}?", "text", other.color,
        _texts(other.color, wrong, NAMED),
        f"{anchor.label} is a {anchor.color} {anchor.shape}; the next shape to its left in the same row is a "
        f"{other.color} {other.shape}, so the answer is {other.color}.",
        load,
    )


@_template("shape.above", "shape_scene", "relation", ("spatial_relationship", "shape"), 0.15, inverse=("shape.left_of",))
def _shape_above(rng: random.Random, level: float) -> Draft:
    items, anchor, other, rows, cols, load = _neighbour_scene(rng, level, -1, 0)
    wrong = [anchor.shape, *_around(items, anchor, "shape")]
    return Draft(
        _scene(rng, items, rows, cols),
        f"What kind of shape is directly above the shape labelled {anchor.label}?", "text", other.shape,
        _texts(other.shape, wrong, SHAPE_NAMES),
        f"{anchor.label} is a {anchor.color} {anchor.shape}; the shape directly above it in the same column is a "
        f"{other.color} {other.shape}.",
        load,
    )


@_template("shape.largest_label", "shape_scene", "argmax", ("spatial_recognition", "text_recognition"), 0.1, inverse=("shape.left_of",))
def _shape_largest_label(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 4, 12)
    rows, cols, cells = _grid(rng, n)
    items = _random_items(rng, cells, _palette(rng, level), SHAPE_NAMES)
    cell = min(640 / cols, 480 / rows) / 480
    # Closer sizes at higher levels, but the largest always covers >= 1.35x the next area.
    for it in items:
        it.size = round(cell * rng.uniform(0.3, 0.45 + 0.1 * level), 4)
    big = rng.choice(items)
    big.shape = rng.choice(["circle", "square", "hexagon"])
    runner = max(x.area for x in items if x is not big)
    big.size = round(min(cell * 0.8, max(big.size, math.sqrt(1.35 * runner / SHAPE_AREA[big.shape]) * 1.02)), 4)
    if big.area < 1.35 * runner:  # cannot grow further: shrink the rest instead
        for x in items:
            if x is not big:
                x.size = round(x.size * 0.8, 4)
    for k, it in enumerate(items):
        it.label = "ABCDEFGHJKLM"[k]
    order = sorted(items, key=lambda x: -x.area)
    return Draft(
        _scene(rng, items, rows, cols), "What is the label of the largest shape?", "text", big.label or "",
        _texts(big.label or "", [x.label or "" for x in order[1:]]),
        f"The {big.color} {big.shape} covers clearly more area than any other shape; its label is {big.label}.",
        load, False, 1 if level > 0.5 else 0,
    )


# --- visual prompts ----------------------------------------------------------------------------


# What the module that makes a kind's problems (agents.sim.sciences, agents.sim.documents) registers
# for it: how a proposer describes its image, (spec, canvas) -> text; and what its drawn image can
# get wrong, (rng, spec, question) -> (the spec as drawn, how), or None when the spec offers no such
# change (agents.sim.hazards asks there first).
DESCRIBERS: dict[str, Callable[[ImageSpec, str], str]] = {}
FAILURES: dict[str, Callable[[random.Random, Any, str], tuple[ImageSpec, str] | None]] = {}


def describe(spec: ImageSpec) -> str:
    """The image as a proposer would describe it to an image model: layout, values, labels."""
    canvas = f"a {spec.width}x{spec.height} white canvas" + (f", titled '{spec.title}'" if spec.title else "")
    if spec.kind in DESCRIBERS:
        return DESCRIBERS[spec.kind](spec, canvas)
    if isinstance(spec, BarChart):
        bars = "; ".join(f"{b.label} = {fmt_number(b.value)} ({b.color or 'blue'})" for b in spec.bars)
        shown = " Each bar's value is printed just above it." if spec.show_values else ""
        return (
            f"A vertical bar chart on {canvas}. X axis '{spec.x_label}', y axis '{spec.y_label}' with light "
            f"horizontal gridlines starting at 0. {len(spec.bars)} bars from left to right: {bars}.{shown}"
        )
    if isinstance(spec, LineChart):
        lines = "; ".join(
            f"'{s.name}' ({s.color} line with dots{', values printed above the dots' if s.show_values else ''}): "
            + ", ".join(fmt_number(v) for v in s.values)
            for s in spec.series
        )
        legend = " A legend at the right names each line." if len(spec.series) > 1 else ""
        return (
            f"A line chart on {canvas}. X axis '{spec.x_label}' with points {', '.join(spec.x_labels)}; "
            f"y axis '{spec.y_label}' with gridlines. Series: {lines}.{legend}"
        )
    if isinstance(spec, PieChart):
        pcts = percent_labels([s.value for s in spec.slices])
        parts = "; ".join(f"{s.label} {p} ({s.color})" for s, p in zip(spec.slices, pcts))
        return (
            f"A pie chart on {canvas}. Slices clockwise from 12 o'clock: {parts}. Each slice's percentage is "
            f"printed just outside its edge; a legend on the right pairs colour swatches with category names."
        )
    if isinstance(spec, Table):
        rows = "; ".join(" | ".join(c if isinstance(c, str) else fmt_number(c) for c in r) for r in spec.rows)
        return f"A ruled table on {canvas}, grey header row: {' | '.join(spec.columns)}. Rows: {rows}."
    if isinstance(spec, GeometryFigure):
        return _describe_figure(spec, canvas)
    assert isinstance(spec, ShapeScene)  # every other kind has its describer in DESCRIBERS
    items = "; ".join(
        f"{s.color} {s.shape} at x={s.x:.2f}, y={s.y:.2f}, size {s.size:.2f}" + (f", labelled '{s.label}' below it" if s.label else "")
        for s in spec.shapes
    )
    return f"Flat solid-colour shapes on {canvas}, arranged in a loose grid (x, y from the top-left, 0..1): {items}."


def _describe_figure(spec: GeometryFigure, canvas: str) -> str:
    names = spec.vertex_names
    labels = list(spec.side_labels)
    note = f" Caption under the figure: '{spec.note}'." if spec.note else ""
    if spec.figure == "circle":
        return (
            f"A circle with centre {names[0] if names else 'O'} on {canvas}, drawn with a {spec.circle_segment} "
            f"labelled '{labels[0] if labels else ''}'.{note}"
        )
    if spec.figure == "rectangle":
        sides = ["width AB (bottom)", "height BC (right)", "diagonal AC"]
        what = "Rectangle ABCD (A bottom-left, counter-clockwise)"
    else:
        sides = ["side AB", "side BC", "side CA"]
        what = "Right triangle ABC with the right angle at B (marked)" if spec.figure == "right_triangle" else "Triangle ABC"
    marks = [f"{s} labelled '{t}'" for s, t in zip(sides, labels) if t]
    marks += [f"angle {v} labelled '{t}'" for v, t in zip("ABC", spec.angle_labels) if t]
    return f"{what}, drawn to scale on {canvas}; {', '.join(marks) or 'no labels'}.{note}"


# --- the world ---------------------------------------------------------------------------------

STRATEGY_BONUS: dict[str, float] = {
    "numerical_variation": 0.0,
    "logic_reversion": 0.05,
    "auxiliary_extension": 0.05,
    "isomorphic_transfer": 0.03,
    "fine_grained_perception": 0.03,
    "cognitive_reasoning": 0.06,
    "interaction": 0.02,
}
# MMEvol's fine-grained perception asks about details: the capabilities that read them off the image.
PERCEPTION: frozenset[str] = frozenset({"color", "shape", "text_recognition", "counting", "spatial_recognition"})
REASONING: frozenset[str] = frozenset({"numeric_reasoning", "geometric_reasoning", "spatial_relationship"})


@lru_cache(maxsize=None)
def _reach(template: str) -> tuple[float, float]:
    """The difficulty range a template actually spans, measured once on private fixed-seed draws."""
    world = World()
    lows = [world.generate(random.Random(k), template, 0.0).difficulty for k in range(4)]
    highs = [world.generate(random.Random(k), template, 1.0).difficulty for k in range(4)]
    return min(lows), max(highs)


class World:
    """Ground truth for the simulated panel: starter problems and their CAD-Generate evolutions."""

    templates: dict[str, Template] = TEMPLATES

    def seed(self, rng: random.Random) -> Problem:
        """A fresh, fairly easy starter problem from a forward template."""
        forward = [t for t in TEMPLATES.values() if not t.reverse]
        t = rng.choice(forward)
        return self.generate(rng, t.id, rng.uniform(0.0, 0.5))

    def generate(self, rng: random.Random, template: str, level: float, bonus: float = 0.0) -> Problem:
        """One problem from a named template at a level in 0..1."""
        t = TEMPLATES[template]
        d = t.make(rng, max(0.0, min(1.0, level)))
        difficulty = t.floor + 0.3 * d.load + 0.1 * d.precision + 0.05 * min(d.steps, 3) + bonus
        return Problem(
            spec=d.spec,
            question=d.question,
            answer_type=d.answer_type,
            choices=d.choices,
            truth=d.truth,
            distractors=d.distractors,
            capabilities=t.caps,
            difficulty=round(max(0.02, min(0.98, difficulty)), 3),
            solution=d.solution,
            visual_prompt=describe(d.spec),
            template=t.id,
            kind=t.kind,
        )

    def evolve(
        self, rng: random.Random, seed: Problem | None, strategy: Strategy,
        capabilities: Sequence[Capability], difficulty_target: float,
    ) -> Problem:
        """Apply a meta-strategy to the seed, steering toward the capabilities and difficulty asked for."""
        target = max(0.0, min(1.0, difficulty_target))
        if seed is not None and strategy in ("auxiliary_extension", "cognitive_reasoning"):
            target = max(target, seed.difficulty + 0.1)  # extension never makes it easier
        if strategy == "fine_grained_perception":
            target = min(1.0, target + 0.1)  # more, smaller details to read
        candidates = self._candidates(seed, strategy)
        bonus = STRATEGY_BONUS[strategy]
        t = _pick(rng, candidates, [c for c in capabilities if c in CAPABILITIES], target - bonus)
        lo, hi = _reach(t.id)
        level = (target - bonus - lo) / max(0.05, hi - lo)
        best: Problem | None = None
        for lv in (level, level - 0.25, level + 0.25):  # the nearest of three draws lands close to target
            p = self.generate(rng, t.id, lv, bonus)
            if best is None or abs(p.difficulty - target) < abs(best.difficulty - target):
                best = p
        assert best is not None
        return recast(rng, best) if strategy == "interaction" else best

    def _candidates(self, seed: Problem | None, strategy: Strategy) -> list[Template]:
        every = list(TEMPLATES.values())
        if strategy in ("fine_grained_perception", "cognitive_reasoning", "interaction"):
            return _operator_candidates(every, None if seed is None else TEMPLATES[seed.template], strategy)
        if seed is None:
            if strategy == "logic_reversion":
                return [t for t in every if t.reverse]
            if strategy == "auxiliary_extension":
                return [t for t in every if len(t.caps) >= 2]
            return every
        s = TEMPLATES[seed.template]
        if strategy == "numerical_variation":
            return [s]
        if strategy == "logic_reversion":
            return [TEMPLATES[i] for i in s.inverse]
        if strategy == "auxiliary_extension":
            richer = [t for t in every if t.kind == s.kind and t.id != s.id and len(t.caps) > len(s.caps)]
            return richer or [t for t in every if t.kind == s.kind and t.floor >= s.floor and t.id != s.id] or [s]
        same = [t for t in every if t.family == s.family and t.kind != s.kind]
        return same or [t for t in every if t.kind != s.kind and not t.reverse]


def _operator_candidates(every: list[Template], seed: Template | None, strategy: Strategy) -> list[Template]:
    """Where MMEvol's operators go: perception stays on the seed's image kind and reads finer
    details; reasoning adds steps on the same kind; interaction keeps the problem, changes its format."""
    if strategy == "interaction":
        return [seed] if seed is not None else every
    near = [t for t in every if seed is None or t.kind == seed.kind]
    if strategy == "fine_grained_perception":
        return [t for t in near if PERCEPTION & set(t.caps)] or near
    richer = [
        t for t in near
        if REASONING & set(t.caps) and (seed is None or (t.id != seed.id and (len(t.caps) > len(seed.caps) or t.floor > seed.floor)))
    ]
    return richer or [t for t in near if seed is None or t.id != seed.id] or near


def recast(rng: random.Random, p: Problem) -> Problem:
    """MMEvol's interaction operator: the same problem in another answer format. An open question
    becomes multiple choice (the world's plausible wrong answers as the other options); a multiple
    choice question becomes open (the chosen option is the answer)."""
    if p.answer_type != "choice":
        if len(p.distractors) < 3:
            return p
        options, letter, others = _choice(rng, p.truth, p.distractors)
        solution = f"{p.solution}\nOf the options, {p.truth} is ({letter})."
        return replace(p, question=f"{p.question} Pick one option.", answer_type="choice", choices=options,
                       truth=letter, distractors=others, solution=solution)
    assert p.choices is not None
    if "of these" in p.question:
        return p  # the question asks about its options: without them it has no single answer
    text = p.choices[LETTERS.index(p.truth)]
    wrong = [p.choices[LETTERS.index(x)] for x in p.distractors if x in LETTERS[: len(p.choices)]]
    try:
        value = float(text)
        kind: AnswerType = _num_kind(value)
    except ValueError:
        kind = "text"
    question = p.question if p.question.rstrip().endswith("?") else p.question.rstrip() + "?"
    return replace(p, question=f"{question} Answer without options.", answer_type=kind, choices=None,
                   truth=text, distractors=wrong, solution=f"{p.solution}\nThe answer itself: {text}.")


def _pick(rng: random.Random, candidates: list[Template], caps: list[Capability], target: float) -> Template:
    """The candidate whose capabilities best match the request and whose difficulty range covers target."""
    want = set(caps)

    def score(t: Template) -> float:
        have = set(t.caps)
        s = 2.0 * len(have & want) - 0.5 * len(have - want) - 0.5 * abs(len(t.caps) - len(caps)) if want else 0.0
        lo, hi = _reach(t.id)
        gap = max(0.0, lo - target, target - hi)
        return s - 4.0 * gap + rng.uniform(0.0, 0.6)  # the noise keeps equally good templates in rotation

    return max(candidates, key=score)


# The science domains' templates register themselves (their own module: each kind's problems,
# descriptions and failure modes together).
from cadsynth.agents.sim import sciences as _sciences  # noqa: E402,F401
# The untrusted kinds' templates register themselves (with `_template`) when their module loads.
from cadsynth.agents.sim import documents as _documents  # noqa: E402,F401
