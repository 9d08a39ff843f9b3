"""Circuits laid out by SchemDraw and drawn with Pillow: a battery on the left, the stages in series
along the top, each stage's parallel branches stacked downwards, the return wire at the bottom.

SchemDraw places standard symbols by direction and length, so the layout is a short walk over the
spec; its segments (polylines, dots, labels, in drawing units) are then drawn with Pillow, in the
DejaVu Sans that matplotlib ships (by file path: Pillow's own font has no Ω). Through matplotlib
the same drawing took 4.6 times a bar chart's median time (bench/renderers.py); this way, 1.2 times.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from cadsynth.specs import Circuit, Resistor, fmt_number

ROW = 2.6  # SchemDraw units between parallel branches
UNIT = 3.0  # one resistor's length
INK = (0, 0, 0)


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def ohms_text(r: Resistor) -> str:
    return f"{r.name}\n{fmt_number(r.ohms)} Ω" if r.show_value else r.name


def schematic(spec: Circuit) -> Any:
    """The spec as a SchemDraw drawing, laid out (never drawn by SchemDraw itself)."""
    import schemdraw
    import schemdraw.elements as elm

    rows = max(len(s.branches) for s in spec.stages)
    top = ROW * max(1, rows - 1) + 2.0
    d = schemdraw.Drawing(show=False, fontsize=12, lw=1.6)
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
    from schemdraw.segments import Segment, SegmentCircle, SegmentText

    from cadsynth.agents.painter.render import _base_size, _title

    draw = ImageDraw.Draw(img)
    base = _base_size(spec.width, spec.height)
    top = _title(draw, spec, base)
    d = schematic(spec)
    box = d.get_bbox()
    pad = 1.2  # drawing units around the symbols: room for the labels beside them
    x0, x1, y0, y1 = box.xmin - pad, box.xmax + pad, box.ymin - pad, box.ymax + pad
    k = min(spec.width / (x1 - x0), (spec.height - top) / (y1 - y0))  # pixels per unit, both ways
    ox = (spec.width - (x1 - x0) * k) / 2 - x0 * k
    oy = top + ((spec.height - top) + (y1 - y0) * k) / 2 + y0 * k

    def at(x: float, y: float) -> tuple[float, float]:
        return ox + x * k, oy - y * k

    width = max(1, round(0.05 * k))
    text = font(max(8, min(24, round(0.32 * k))))
    for seg in d.get_segments():
        if isinstance(seg, Segment):
            run: list[tuple[float, float]] = []
            for p in [*seg.path, (math.nan, math.nan)]:  # a nan point breaks the line (a battery's gap)
                if math.isnan(p[0]):
                    if len(run) > 1:
                        draw.line(run, fill=INK, width=width, joint="curve")
                    run = []
                else:
                    run.append(at(p[0], p[1]))
        elif isinstance(seg, SegmentCircle):
            cx, cy = at(*seg.center)
            r = max(2.0, seg.radius * k)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=INK if seg.fill else None, outline=INK)
        elif isinstance(seg, SegmentText) and seg.text:
            _label(draw, at(*seg.xy), seg.text, text, seg.align or ("center", "center"))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, face: ImageFont.FreeTypeFont, align: tuple[str, str]) -> None:
    """Lines of text placed as SchemDraw aligns them: (left|center|right, top|center|bottom) at xy."""
    from cadsynth.agents.painter.render import _put

    lines = text.split("\n")
    step = face.getbbox("Ag")[3] + 2
    y = xy[1] - {"top": 0.0, "center": step * len(lines) / 2, "bottom": step * len(lines)}.get(align[1], 0.0)
    for i, line in enumerate(lines):
        _put(draw, (xy[0], y + i * step), line, face, {"left": "l", "center": "m", "right": "r"}.get(align[0], "m") + "t")
