"""Circuits drawn with SchemDraw (on matplotlib's Agg canvas): a battery on the left, the stages in
series along the top, each stage's parallel branches stacked downwards, the return wire at the bottom.

SchemDraw places standard symbols by direction and length, so the drawing is a short walk over the
spec: no coordinates to compute beyond where each branch starts.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

from cadsynth.agents.painter import mpl
from cadsynth.specs import Circuit, Resistor, fmt_number

ROW = 2.6  # SchemDraw units between parallel branches
UNIT = 3.0  # one resistor's length


def ohms_text(r: Resistor) -> str:
    return f"{r.name}\n{fmt_number(r.ohms)} Ω" if r.show_value else r.name


def schematic(spec: Circuit, ax: Any) -> Any:
    """The spec as a SchemDraw drawing on the axes (drawn, not yet rendered)."""
    import schemdraw
    import schemdraw.elements as elm

    rows = max(len(s.branches) for s in spec.stages)
    top = ROW * max(1, rows - 1) + 2.0
    d = schemdraw.Drawing(canvas=ax, show=False, fontsize=12, lw=1.6)
    d.config(unit=UNIT)
    # The battery, mid-way up the left side: long plate (positive) on top.
    d += elm.Line().up(top / 2 - 0.5).at((0, 0))
    battery = elm.BatteryCell().up(1.0).reverse()
    d += battery.label(f"{fmt_number(spec.volts)} V" if spec.show_volts else "", loc="top", ofst=0.3)  # outside the loop
    d += elm.Line().up().toy(top)
    x = 0.0
    for stage in spec.stages:
        d += elm.Line().right(0.8).at((x, top))
        x += 0.8
        width = UNIT * max(len(b.resistors) for b in stage.branches)
        if len(stage.branches) > 1:
            d += elm.Dot().at((x, top))
            d += elm.Dot().at((x + width, top))
        for j, branch in enumerate(stage.branches):
            y = top - ROW * j
            if j:
                d += elm.Line().down(ROW).at((x, top - ROW * (j - 1)))
                d += elm.Line().down(ROW).at((x + width, top - ROW * (j - 1)))
            at = x
            for r in branch.resistors:
                d += elm.Resistor().right(UNIT).at((at, y)).label(ohms_text(r), loc="top" if j == 0 else "bottom")
                at += UNIT
            if at < x + width:
                d += elm.Line().right(x + width - at).at((at, y))
        x += width
    d += elm.Line().right(0.8).at((x, top))
    x += 0.8
    d += elm.Line().down().toy(0)
    d += elm.Line().left().tox(0)
    return d


def draw_circuit(img: Image.Image, spec: Circuit) -> None:
    from cadsynth.agents.painter.render import _base_size, _title

    top = _title(ImageDraw.Draw(img), spec, _base_size(spec.width, spec.height))
    with mpl.defaults():
        _draw(img, spec, top)


def _draw(img: Image.Image, spec: Circuit, top: int) -> None:
    fig = mpl.figure(spec.width, spec.height - top)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    d = schematic(spec, ax)
    d.draw(show=False)
    box = d.get_bbox()
    pad = 1.0
    ax.set_xlim(box.xmin - pad, box.xmax + pad)
    ax.set_ylim(box.ymin - pad, box.ymax + pad)
    ax.set_aspect("equal", anchor="C")
    # Text in proportion to the symbols: a big circuit is drawn smaller, its labels with it.
    scale = min(spec.width / (box.xmax - box.xmin + 2 * pad), (spec.height - top) / (box.ymax - box.ymin + 2 * pad))
    size = max(7.0, min(15.0, 0.3 * scale * 72 / mpl.DPI))
    for text in ax.texts:
        text.set_fontsize(size)
    mpl.paste(img, fig, (0, top))
