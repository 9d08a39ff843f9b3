"""Function plots drawn with matplotlib (Agg): the curves of expressions parsed by cadsynth.expr,
on a grid with labelled axes, a legend and optional labelled points.

An expression is evaluated by walking its parsed tree over a numpy array (never as code); values
outside its domain (log of a negative, a pole) are left out of the line instead of drawn across.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cadsynth.agents.painter import mpl
from cadsynth.expr import evaluate, parse
from cadsynth.specs import CHART_ORDER, PALETTE, FunctionPlot

SAMPLES = 801


def samples(spec: FunctionPlot) -> tuple[Any, list[Any]]:
    """x and each curve's y at the points drawn (nan where the expression has no value)."""
    x = np.linspace(spec.x_min, spec.x_max, SAMPLES)
    ys = []
    for curve in spec.curves:
        y = np.broadcast_to(np.asarray(evaluate(parse(curve.expr), x), dtype=float), x.shape).copy()
        y[~np.isfinite(y)] = np.nan
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
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    margin = 0.08 * (hi - lo)
    return lo - margin, hi + margin


def colour(name: str | None, i: int) -> tuple[float, float, float]:
    r, g, b = PALETTE[name or CHART_ORDER[i % len(CHART_ORDER)]]
    return r / 255, g / 255, b / 255


def axes(spec: FunctionPlot, fig: Any) -> Any:
    """The plot's axes with everything drawn on it (tests map data to pixels through it)."""
    from matplotlib.ticker import MaxNLocator

    x, ys = samples(spec)
    lo, hi = y_range(spec, ys)
    ax = fig.add_subplot()
    for i, (curve, y) in enumerate(zip(spec.curves, ys)):
        clipped = np.where((y < lo - (hi - lo)) | (y > hi + (hi - lo)), np.nan, y)  # a pole is not a vertical line
        ax.plot(x, clipped, color=colour(curve.color, i), linewidth=2.0, label=curve.label)
    for p in spec.points:
        ax.plot([p.x], [p.y], "o", color="black", markersize=5)
        if p.label:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(6, 6), fontsize=11)
    ax.set_xlim(spec.x_min, spec.x_max)
    ax.set_ylim(lo, hi)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.axhline(0, color="#555555", linewidth=1.0, zorder=1.8)  # over the grid, under the curves
    ax.axvline(0, color="#555555", linewidth=1.0, zorder=1.8)
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(spec.y_label)
    ax.legend(loc="best", fontsize=11, framealpha=0.9)
    ax.tick_params(labelsize=10)
    return ax


def laid_out(spec: FunctionPlot, height: int) -> tuple[Any, Any]:
    """The plot's figure, `height` pixels tall under the title, and its axes, laid out."""
    fig = mpl.figure(spec.width, height)
    ax = axes(spec, fig)
    mpl.bundled_fonts(fig)  # before the layout measures the text
    fig.tight_layout(pad=0.6)
    return fig, ax


def draw_function_plot(img: Image.Image, spec: FunctionPlot) -> None:
    from cadsynth.agents.painter.render import _base_size, _title

    top = _title(ImageDraw.Draw(img), spec, _base_size(spec.width, spec.height))
    fig, _ = laid_out(spec, spec.height - top)
    mpl.paste(img, fig, (0, top))

