"""Function plots drawn with Pillow: the curves of expressions parsed by cadsynth.expr, on a grid
with numbered axes, a legend and optional labelled points, in the style of the painter's charts.

An expression is evaluated by walking its parsed tree over a numpy array (never as code); values
outside its domain (log of a negative, a pole) are left out of the line instead of drawn across.
Pillow rather than matplotlib: a grid, polylines and a few labels need nothing more, and a plot
draws in about the time of a bar chart (bench/renderers.py), where matplotlib took 6.8 times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cadsynth.expr import evaluate, parse
from cadsynth.specs import CHART_ORDER, PALETTE, FunctionPlot, SpecError, fmt_number

SAMPLES = 641  # one per pixel column at the default width
AXIS = (85, 85, 85)


def samples(spec: FunctionPlot, n: int = SAMPLES) -> tuple[Any, list[Any]]:
    """x and each curve's y at n points (nan where the expression has no value)."""
    x = np.linspace(spec.x_min, spec.x_max, n)
    ys = []
    for i, curve in enumerate(spec.curves):
        with np.errstate(all="ignore"):  # overflow and poles become nan, left out of the line
            y = np.broadcast_to(np.asarray(evaluate(parse(curve.expr), x), dtype=float), x.shape).copy()
        y[~np.isfinite(y)] = np.nan
        if np.isnan(y).all():  # nothing to draw: an empty plot would ask about a curve nobody sees
            raise SpecError(f"curves[{i}].expr: {curve.expr[:40]!r} has no finite value for x in "
                            f"[{fmt_number(spec.x_min)}, {fmt_number(spec.x_max)}]; give a curve that exists there")
        ys.append(y)
    return x, ys


def y_range(spec: FunctionPlot, ys: list[Any]) -> tuple[float, float]:
    """The view's bottom and top: the spec's, or the curves' and points' extent with a margin."""
    if spec.y_min is not None and spec.y_max is not None:
        return spec.y_min, spec.y_max
    finite = [y[np.isfinite(y)] for y in ys]
    values = np.concatenate(finite) if finite else np.array([])
    if values.size:
        # The curves' bulk, not a pole's spike: 1st to 99th percentile.
        lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    else:
        lo, hi = -1.0, 1.0
    for p in spec.points:
        lo, hi = min(lo, p.y), max(hi, p.y)
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 1, hi + 1
    margin = 0.08 * (hi - lo)
    return lo - margin, hi + margin


def colour(name: str | None, i: int) -> tuple[int, int, int]:
    return PALETTE[name or CHART_ORDER[i % len(CHART_ORDER)]]


def _ticks(lo: float, hi: float, target: int) -> tuple[list[float], list[str]]:
    """Round tick values inside [lo, hi] and their labels, as many decimals as the step needs."""
    from cadsynth.agents.painter.render import _nice_step

    step = _nice_step(hi - lo, target)
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    values = [k * step for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)]
    return values, [f"{0.0 if abs(v) < step / 2 else v:.{decimals}f}" for v in values]  # never "-0"


@dataclass(frozen=True)
class Frame:
    """Where the plot sits on the canvas and how data maps to pixels."""

    left: float
    top: float
    right: float
    bottom: float
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def px(self, x: float, y: float) -> tuple[float, float]:
        return (
            self.left + (x - self.x_min) / (self.x_max - self.x_min) * (self.right - self.left),
            self.bottom - (y - self.y_min) / (self.y_max - self.y_min) * (self.bottom - self.top),
        )


def layout(spec: FunctionPlot, ys: list[Any] | None = None) -> tuple[Frame, list[tuple[float, str]], list[tuple[float, str]]]:
    """The plot's frame and its x and y ticks (value, label), from the spec alone."""
    from cadsynth.agents.painter.render import _base_size, _font, _measure, _title

    if ys is None:
        ys = samples(spec)[1]
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(ImageDraw.Draw(Image.new("RGB", (1, 1))), spec, base)  # measured as the drawer places it
    lo, hi = y_range(spec, ys)
    font = _font(base)
    line = _measure("Ag", font)[1]
    xt = _ticks(spec.x_min, spec.x_max, max(3, round(w / 70)))
    yt = _ticks(lo, hi, max(3, round(h / 60)))
    left = pad + (line + pad if spec.y_label else 0) + max((_measure(t, font)[0] for t in yt[1]), default=0) + pad
    bottom = h - pad - (line + pad if spec.x_label else 0) - line - pad
    right = w - pad - _measure(xt[1][-1], font)[0] / 2 if xt[1] else w - pad
    frame = Frame(left, top + line / 2, max(left + 2, right), max(top + 2, bottom), spec.x_min, spec.x_max, lo, hi)
    return frame, list(zip(*xt)), list(zip(*yt))


def _runs(frame: Frame, x: Any, y: Any) -> list[list[tuple[float, float]]]:
    """The curve as pixel polylines, broken where it has no value or runs far off the view (a pole)."""
    span = frame.y_max - frame.y_min
    ok = np.isfinite(y) & (y > frame.y_min - span) & (y < frame.y_max + span)
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for xi, yi, good in zip(x, y, ok):
        if good:
            current.append(frame.px(float(xi), float(yi)))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def draw_function_plot(img: Image.Image, spec: FunctionPlot) -> None:
    from cadsynth.agents.painter.render import BLACK, GRID, _base_size, _font, _put, _put_y_label, _title

    draw = ImageDraw.Draw(img)
    base = _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    x, ys = samples(spec)
    frame, xticks, yticks = layout(spec, ys)
    _title(draw, spec, base)
    font = _font(base)
    box = (round(frame.left), round(frame.top), round(frame.right), round(frame.bottom))
    for v, text in xticks:
        gx = round(frame.px(v, 0)[0])
        draw.line((gx, box[1], gx, box[3]), fill=GRID)
        _put(draw, (gx, box[3] + pad), text, font, "mt")
    for v, text in yticks:
        gy = round(frame.px(0, v)[1])
        draw.line((box[0], gy, box[2], gy), fill=GRID)
        _put(draw, (box[0] - pad, gy), text, font, "rm")
    # The axes themselves, where zero is in view; then the curves on a layer clipped to the frame.
    if frame.x_min < 0 < frame.x_max:
        zx = round(frame.px(0, 0)[0])
        draw.line((zx, box[1], zx, box[3]), fill=AXIS, width=2)
    if frame.y_min < 0 < frame.y_max:
        zy = round(frame.px(0, 0)[1])
        draw.line((box[0], zy, box[2], zy), fill=AXIS, width=2)
    layer = Image.new("RGBA", (box[2] - box[0] + 1, box[3] - box[1] + 1), (0, 0, 0, 0))
    ink = ImageDraw.Draw(layer)
    width = max(3, base // 4)
    for i, (curve, y) in enumerate(zip(spec.curves, ys)):
        for run in _runs(frame, x, y):
            pts = [(px - box[0], py - box[1]) for px, py in run]
            if len(pts) > 1:
                ink.line(pts, fill=colour(curve.color, i), width=width, joint="curve")
            else:
                ink.point(pts, fill=colour(curve.color, i))
    r = max(3, base // 3)
    for p in spec.points:
        px, py = frame.px(p.x, p.y)
        ink.ellipse((px - box[0] - r, py - box[1] - r, px - box[0] + r, py - box[1] + r), fill=BLACK)
    img.paste(layer, (box[0], box[1]), layer)
    for p in spec.points:
        px, py = frame.px(p.x, p.y)
        if p.label and frame.left <= px <= frame.right and frame.top <= py <= frame.bottom:
            _put(draw, (px + r + 2, py - r - 2), p.label, font, "lb")
    draw.rectangle(box, outline=BLACK)
    if spec.x_label:
        _put(draw, ((frame.left + frame.right) / 2, spec.height - pad), spec.x_label, font, "mb")
    if spec.y_label:
        _put_y_label(img, (pad, (frame.top + frame.bottom) / 2), spec.y_label, font)
    _legend(draw, spec, frame, x, ys, font, pad)


def _legend(draw: Any, spec: FunctionPlot, frame: Frame, x: Any, ys: list[Any], font: Any, pad: int) -> None:
    """The legend in the top corner of the plot the curves cross least."""
    from cadsynth.agents.painter.render import RULE, WHITE, _measure, _put, _rect

    row = _measure("Ag", font)[1] + pad
    swatch = 2 * row
    w = swatch + pad + max(_measure(c.label, font)[0] for c in spec.curves) + 2 * pad
    h = row * len(spec.curves) + pad
    corners = [(frame.left + pad, frame.top + pad), (frame.right - pad - w, frame.top + pad)]

    def crossings(corner: tuple[float, float]) -> int:
        cx, cy = corner
        hits = 0
        for y in ys:
            for px, py in (frame.px(float(a), float(b)) for a, b in zip(x[::8], y[::8]) if np.isfinite(b)):
                hits += cx <= px <= cx + w and cy <= py <= cy + h
        return hits

    lx, ly = min(corners, key=crossings)
    _rect(draw, lx, ly, lx + w, ly + h, fill=WHITE, outline=RULE)
    for i, curve in enumerate(spec.curves):
        y = ly + pad / 2 + row * i + row / 2
        draw.line((round(lx + pad), round(y), round(lx + pad + swatch - pad), round(y)), fill=colour(curve.color, i), width=3)
        _put(draw, (lx + pad + swatch, y), curve.label, font, "lm")
