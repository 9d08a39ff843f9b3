"""The simulated world's untrusted kinds: problems drawn as a Vega-Lite spec or an SVG document.

A real proposer writes these for what no template covers; the world writes them from its own
data, so each truth is computed, as for every other kind. Templates register with world.py's
`_template`; their descriptions and failure modes (a label missing, a value drawn differently) go
in the world's `DESCRIBERS` and `FAILURES`, which agents.sim.hazards applies as it does every kind's.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from xml.sax.saxutils import escape

from cadsynth.specs import PALETTE, ImageSpec, SvgImage, VegaLiteChart, fmt_number
from cadsynth.agents.sim.world import (
    BAR_THEMES,
    DESCRIBERS,
    FAILURES,
    CITIES,
    FRUITS,
    NAMED,
    NAMES,
    PRODUCTS,
    TEAMS,
    Draft,
    _count,
    _decimals,
    _nums,
    _template,
    _texts,
    _values,
)

W, H = 640, 480
# Text sizes at the default canvas: large enough that a reader (and the legibility gate's OCR)
# reads every label; the renderers' own defaults (11 px axis labels in Vega-Lite) are not.
_VL_CONFIG = {
    "axis": {"labelFontSize": 15, "titleFontSize": 15, "labelAngle": 0, "labelLimit": 0},
    "title": {"fontSize": 20},
    "text": {"fontSize": 15},
    "view": {"stroke": None},
}
_HEX = {name: "#{:02x}{:02x}{:02x}".format(*PALETTE[name]) for name in NAMED if name in PALETTE}
_FILL_NAMES = {v: k for k, v in _HEX.items()}
_DECOYS = [*FRUITS, *CITIES, *NAMES, *PRODUCTS, *TEAMS]

# --- Vega-Lite -------------------------------------------------------------------------------------


def _vl_bars(labels: list[str], values: list[float], x_title: str, y_title: str, title: str) -> VegaLiteChart:
    """A bar chart with each value printed above its bar (a text layer)."""
    spec = {
        "data": {"values": [{"label": l, "value": v} for l, v in zip(labels, values)]},
        "encoding": {
            "x": {"field": "label", "type": "nominal", "sort": None, "title": x_title},
            "y": {"field": "value", "type": "quantitative", "title": y_title},
        },
        "layer": [
            {"mark": {"type": "bar", "color": _HEX["blue"]}},
            {"mark": {"type": "text", "baseline": "bottom", "dy": -3}, "encoding": {"text": {"field": "value", "type": "quantitative"}}},
        ],
        "config": _VL_CONFIG,
    }
    return VegaLiteChart(title=title, width=W, height=H, vega_lite=json.dumps(spec))


def _vl_scatter(labels: list[str], xs: list[float], ys: list[float], x_title: str, y_title: str, title: str) -> VegaLiteChart:
    """Labelled points: each point's name printed beside it."""
    spec = {
        "data": {"values": [{"name": l, "x": x, "y": y} for l, x, y in zip(labels, xs, ys)]},
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "title": x_title, "scale": {"zero": False, "padding": 30}},
            "y": {"field": "y", "type": "quantitative", "title": y_title, "scale": {"zero": False, "padding": 30}},
        },
        "layer": [
            {"mark": {"type": "circle", "size": 90, "color": _HEX["orange"], "opacity": 1}},
            {"mark": {"type": "text", "align": "left", "dx": 8}, "encoding": {"text": {"field": "name", "type": "nominal"}}},
        ],
        "config": _VL_CONFIG,
    }
    return VegaLiteChart(title=title, width=W, height=H, vega_lite=json.dumps(spec))


def _bars(rng: random.Random, level: float) -> tuple[VegaLiteChart, list[str], list[float], bool, float]:
    title, x_title, y_title, pool, _ = rng.choice(BAR_THEMES)
    n, load = _count(rng, level, 3, 8)
    labels = rng.sample(pool, n)
    dec = _decimals(rng, level)
    values = _values(rng, n, dec)
    return _vl_bars(labels, values, x_title, y_title, title), labels, values, dec, load


@_template("vl.bar_lookup", "vega_lite", "lookup", ("text_recognition",), 0.05, inverse=("vl.which_bar",))
def _vl_bar_lookup(rng: random.Random, level: float) -> Draft:
    spec, labels, values, dec, load = _bars(rng, level)
    i = rng.randrange(len(values))
    near = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return Draft(
        spec, f"What value is printed above the bar for {labels[i]}?", "number" if dec else "integer", fmt_number(values[i]),
        _nums(values[i], near, 0.1 if dec else 1.0), f"The bar labelled {labels[i]} has {fmt_number(values[i])} printed above it.",
        load, dec,
    )


@_template("vl.which_bar", "vega_lite", "reverse_lookup", ("text_recognition",), 0.1, inverse=("vl.bar_lookup",), reverse=True)
def _vl_which_bar(rng: random.Random, level: float) -> Draft:
    spec, labels, values, dec, load = _bars(rng, level)
    i = rng.randrange(len(values))
    return Draft(
        spec, f"Which category's bar has the value {fmt_number(values[i])} printed above it?", "text", labels[i],
        _texts(labels[i], [labels[j] for j in (i - 1, i + 1) if 0 <= j < len(labels)] + labels, _DECOYS),
        f"The value {fmt_number(values[i])} sits above the bar for {labels[i]}.", load, dec,
    )


@_template("vl.bar_sum", "vega_lite", "sum", ("text_recognition", "numeric_reasoning"), 0.15, inverse=("vl.which_bar",))
def _vl_bar_sum(rng: random.Random, level: float) -> Draft:
    spec, labels, values, dec, load = _bars(rng, level)
    total = round(sum(values), 2)
    return Draft(
        spec, "What is the total of the values printed above all the bars?", "number" if dec else "integer", fmt_number(total),
        _nums(total, [total - values[0], total - values[-1], max(values)], 0.1 if dec else 1.0),
        " + ".join(fmt_number(v) for v in values) + f" = {fmt_number(total)}.", load, dec, len(values) - 1,
    )


@_template("vl.scatter_argmax", "vega_lite", "argmax", ("spatial_recognition", "text_recognition"), 0.12, inverse=("vl.which_bar",))
def _vl_scatter_argmax(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 4, 9)
    labels = rng.sample(CITIES, n)
    xs = [float(v) for v in rng.sample(range(5, 95), n)]
    ys = [float(v) for v in rng.sample(range(5, 95), n)]
    top = max(range(n), key=lambda i: ys[i])
    order = sorted(range(n), key=lambda i: -ys[i])
    spec = _vl_scatter(labels, xs, ys, "Rainy days", "Sunny days", "Days of weather by city")
    return Draft(
        spec, "Which city's point is highest on the chart (the most sunny days)?", "text", labels[top],
        _texts(labels[top], [labels[i] for i in order[1:]], CITIES),
        f"The highest point is labelled {labels[top]}, at {fmt_number(ys[top])} sunny days.", load,
    )


# --- SVG ------------------------------------------------------------------------------------------

_SVG_OPEN = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="DejaVu Sans">'


def _shape(kind: str, cx: float, cy: float, r: float, fill: str) -> str:
    if kind == "circle":
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{fill}"/>'
    if kind == "square":
        return f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{fill}"/>'
    return f'<polygon points="{cx:.1f},{cy - r:.1f} {cx + r:.1f},{cy + r:.1f} {cx - r:.1f},{cy + r:.1f}" fill="{fill}"/>'


_SVG_SHAPES = ("circle", "square", "triangle")


def _cells(rng: random.Random, n: int, cols: int, top: float = 40) -> list[tuple[float, float, float]]:
    rows = -(-n // cols)
    cw, ch = W / cols, (H - top) / rows
    slots = sorted(rng.sample(range(rows * cols), n))
    return [(cw * (s % cols + 0.5), top + ch * (s // cols + 0.5), min(cw, ch)) for s in slots]


@_template("svg.count", "svg", "count_attr", ("color", "shape", "counting"), 0.08, inverse=("svg.which_tag",))
def _svg_count(rng: random.Random, level: float) -> Draft:
    n, load = _count(rng, level, 5, 20)
    colors = rng.sample(list(_HEX), 3 + round(level * 2))
    items = [(rng.choice(_SVG_SHAPES), rng.choice(colors)) for _ in range(n)]
    shape, color = rng.choice(items)
    truth = sum(1 for it in items if it == (shape, color))
    body = "".join(_shape(s, cx, cy, size * 0.3, _HEX[c]) for (s, c), (cx, cy, size) in zip(items, _cells(rng, n, 6)))
    svg = _SVG_OPEN + f'<text x="{W / 2}" y="28" font-size="22" text-anchor="middle">Shapes on a board</text>{body}</svg>'
    same_shape = sum(1 for s, _ in items if s == shape)
    same_color = sum(1 for _, c in items if c == color)
    return Draft(
        SvgImage(width=W, height=H, svg=svg), f"How many {color} {shape}s are there?", "integer", str(truth),
        _nums(truth, [same_shape, same_color, truth + 1]),
        f"Counting the shapes that are both {color} and {shape}s gives {truth}.", load, False, 1 if level > 0.5 else 0,
    )


def _tags(rng: random.Random, level: float) -> tuple[SvgImage, list[str], list[int], float]:
    """Labelled boxes on shelves, each with a number written inside."""
    n, load = _count(rng, level, 3, 10)
    names = rng.sample(PRODUCTS, n)
    values = rng.sample(range(10, 100), n)
    parts = []
    for (cx, cy, size), name, value in zip(_cells(rng, n, 4, 50), names, values):
        bw, bh = size * 0.8, size * 0.55
        parts.append(
            f'<rect x="{cx - bw / 2:.1f}" y="{cy - bh / 2:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="#eef3fc" stroke="black" stroke-width="2"/>'
            f'<text x="{cx:.1f}" y="{cy - 4:.1f}" font-size="18" text-anchor="middle">{escape(name)}</text>'
            f'<text x="{cx:.1f}" y="{cy + 20:.1f}" font-size="20" font-weight="bold" text-anchor="middle">{value}</text>'
        )
    svg = _SVG_OPEN + f'<text x="{W / 2}" y="30" font-size="22" text-anchor="middle">Stock on the shelves</text>{"".join(parts)}</svg>'
    return SvgImage(width=W, height=H, svg=svg), names, values, load


@_template("svg.tag_lookup", "svg", "lookup", ("text_recognition", "spatial_relationship"), 0.06, inverse=("svg.which_tag",))
def _svg_tag_lookup(rng: random.Random, level: float) -> Draft:
    spec, names, values, load = _tags(rng, level)
    i = rng.randrange(len(names))
    return Draft(
        spec, f"What number is written in the box labelled {names[i]}?", "integer", str(values[i]),
        _nums(values[i], [values[j] for j in range(len(values)) if j != i]),
        f"The box labelled {names[i]} holds the number {values[i]}.", load,
    )


@_template("svg.which_tag", "svg", "reverse_lookup", ("text_recognition",), 0.1, inverse=("svg.tag_lookup",), reverse=True)
def _svg_which_tag(rng: random.Random, level: float) -> Draft:
    spec, names, values, load = _tags(rng, level)
    i = rng.randrange(len(names))
    return Draft(
        spec, f"Which box has the number {values[i]} written in it?", "text", names[i],
        _texts(names[i], names, PRODUCTS), f"The number {values[i]} is written in the box labelled {names[i]}.", load,
    )


# --- visual prompts and failure modes ------------------------------------------------------------


def describe_vega_lite(spec: VegaLiteChart) -> str:
    doc = json.loads(spec.vega_lite)
    rows = doc.get("data", {}).get("values", [])
    marks = [layer.get("mark") for layer in doc.get("layer", [])] or [doc.get("mark")]
    kinds = ", ".join(str(m.get("type") if isinstance(m, dict) else m) for m in marks)
    listed = "; ".join(", ".join(f"{k} {v}" for k, v in row.items()) for row in rows[:60] if isinstance(row, dict))
    title = f", titled '{spec.title}'" if spec.title else ""
    return f"A chart ({kinds}) on a {spec.width}x{spec.height} white canvas{title}, every value printed beside its mark. Data: {listed}."


def describe_svg(spec: SvgImage) -> str:
    texts = re.findall(r">([^<>]+)</text>", spec.svg)
    fills = [_FILL_NAMES.get(f, f) for f in re.findall(r'fill="([^"]+)"', spec.svg)]
    shapes = re.findall(r"<(circle|rect|polygon)\b", spec.svg)
    words = "; ".join(f"'{t}'" for t in texts[:60])
    drawn = ", ".join(f"{s} in {c}" for s, c in zip(shapes, fills))
    return f"A flat vector drawing on a {spec.width}x{spec.height} white canvas. Text, in reading order: {words}. Shapes: {drawn}."


def _break_vega_lite(rng: random.Random, spec: ImageSpec, question: str) -> tuple[ImageSpec, str] | None:
    assert isinstance(spec, VegaLiteChart)
    doc = json.loads(spec.vega_lite)
    rows = doc.get("data", {}).get("values", [])
    names = [str(r.get("label", r.get("name"))) for r in rows]
    named = [i for i, n in enumerate(names) if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", question)]
    if named:  # the category the question asks about is missing: another name stands in its place
        i = rng.choice(named)
        decoy = rng.choice([d for d in _DECOYS if d not in names and d not in question])
        rows[i]["label" if "label" in rows[i] else "name"] = decoy
        how = "missing_label"
    else:  # the values drawn are not those the reference was computed from
        key = "value" if rows and "value" in rows[0] else "y"
        values = [r[key] for r in rows][::-1]
        for r, v in zip(rows, values):
            r[key] = round(v * 1.3 + 1, 1)
        how = "changed_value"
    return spec.model_copy(update={"vega_lite": json.dumps(doc)}), how


def _break_svg(rng: random.Random, spec: ImageSpec, question: str) -> tuple[ImageSpec, str] | None:
    assert isinstance(spec, SvgImage)
    svg = spec.svg
    texts = re.findall(r">([^<>]+)</text>", svg)
    named = [t for t in texts if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", question)]
    if named:  # the label or number the question reads is drawn as something else
        t = rng.choice(named)
        other = str(int(t) * 3 % 89 + 10) if t.isdigit() else rng.choice([d for d in _DECOYS if d not in texts])
        return spec.model_copy(update={"svg": svg.replace(f">{t}</text>", f">{other}</text>")}), "missing_label"
    m = re.search(r"How many (\w+) (\w+)s are there", question)
    if m and m.group(1) in _HEX:  # one counted shape is drawn in another colour
        color, shape = m.group(1), m.group(2)
        tag = {"circle": "circle", "square": "rect", "triangle": "polygon"}[shape]
        pattern = re.compile(rf'(<{tag}\b[^>]*fill="){_HEX[color]}"')
        if pattern.search(svg):
            other = next(c for c in _HEX if c != color)
            return spec.model_copy(update={"svg": pattern.sub(rf'\g<1>{_HEX[other]}"', svg, count=1)}), "changed_value"
    return None


FAILURES["vega_lite"], FAILURES["svg"] = _break_vega_lite, _break_svg
DESCRIBERS["vega_lite"] = lambda spec, canvas: describe_vega_lite(spec)  # type: ignore[arg-type]
DESCRIBERS["svg"] = lambda spec, canvas: describe_svg(spec)  # type: ignore[arg-type]
