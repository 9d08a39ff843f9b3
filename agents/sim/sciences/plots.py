"""Math in the simulated world: parabolas and lines on a grid; extrema, crossings and roots computed
from their coefficients (whole numbers where the question reads them off the grid)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import cast

from cadsynth.agents.sim.sciences import FAILURES, titled
from cadsynth.agents.sim.world import DESCRIBERS, Draft, _choice, _join, _num_kind, _nums, _template, _texts
from cadsynth.specs import ColorName, Curve, FunctionPlot, ImageSpec, fmt_number


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
    rng: random.Random, curves: list[tuple[str, str]], x_min: float, x_max: float, y: tuple[float, float] | None = None,
) -> FunctionPlot:
    colors = ["blue", "orange", "green", "purple"]
    names = _join([n for n, _ in curves])
    return FunctionPlot(
        x_min=x_min, x_max=x_max, y_min=y[0] if y else None, y_max=y[1] if y else None,
        title=titled(rng, f"The graph{'s' * (len(curves) > 1)} of {names}", f"{names} on a grid", f"Plot of {names}", ""),
        curves=[Curve(expr=e, label=n, color=cast(ColorName, colors[i])) for i, (n, e) in enumerate(curves)],
    )


@_template("plot.extremum", "function_plot", "argmax", ("spatial_recognition", "text_recognition"), 0.12, inverse=("plot.which_curve",))
def _plot_extremum(rng: random.Random, level: float) -> Draft:
    p = _parabola(rng, level)
    word = "minimum" if p.a > 0 else "maximum"
    ask_x = rng.random() < 0.5
    truth = p.h if ask_x else p.k
    spec = _plot(rng, [("f", p.text())], p.h - 4, p.h + 4)
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
    spec = _plot(rng, [(nm, p.text()) for nm, p in zip(names, parabolas)], -7, 7, (low - 3, low + 17))  # the view on the vertices
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
    spec = _plot(rng, [("f", p.text()), ("g", poly_text(0, m, q))], x_min, x_max)
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
    spec = _plot(rng, [("f", p.text()), ("g", poly_text(0, m, q))], p.h - 5, p.h + 5)
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
    spec = _plot(rng, [("f", poly_text(a, b, c))], min(r1, r2) - 3, max(r1, r2) + 3)
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


DESCRIBERS["function_plot"] = _describe_plot  # type: ignore[assignment]
FAILURES["function_plot"] = _break_plot
