"""Deterministic PNG rendering of image specs with Pillow alone.

Fills use exact palette RGB values and no anti-aliasing, so tests (and judges' sanity checks)
can measure bars, slices and shapes by colour. Text uses Pillow's bundled font: nothing to
download, nothing read from the system.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from cadsynth.agents.painter import untrusted

from cadsynth.specs import (
    CHART_ORDER,
    PALETTE,
    BarChart,
    GeometryFigure,
    ImageSpec,
    LineChart,
    PieChart,
    ShapeScene,
    Table,
    fmt_number,
    percent_labels,
)

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
GRID: RGB = (225, 225, 225)
RULE: RGB = (90, 90, 90)
HEADER: RGB = (232, 232, 232)
FIGURE_FILL: RGB = (238, 243, 252)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Draw = ImageDraw.ImageDraw


# The PNG text chunk that names the spec an image was drawn from: provenance for whoever reads the
# file, and how the simulated panel "sees" an image (agents.sim.truth).
SPEC_STAMP = "cads-spec"


def render(spec: ImageSpec) -> bytes:
    """PNG bytes of the spec at its own size; the same spec always gives the same bytes."""
    img = Image.new("RGB", (spec.width, spec.height), WHITE)
    _DRAWERS[spec.kind](img, spec)
    info = PngImagePlugin.PngInfo()
    info.add_text(SPEC_STAMP, spec_digest(spec))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def spec_stamp(png: bytes) -> str | None:
    """The spec digest a rendered PNG carries (None for any other image). Walks the chunks before
    the pixel data; decodes nothing."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    at, wanted = 8, SPEC_STAMP.encode() + b"\0"
    while at + 8 <= len(png):
        size = int.from_bytes(png[at : at + 4], "big")
        kind = png[at + 4 : at + 8]
        if kind == b"IDAT":
            return None
        data = png[at + 8 : at + 8 + size]
        if kind == b"tEXt" and data.startswith(wanted):
            return data[len(wanted) :].decode("latin-1")
        at += 12 + size
    return None


def spec_digest(spec: ImageSpec) -> str:
    """sha256 of the spec's canonical JSON without its canvas size: equal drawings, equal digests,
    at any size (the legibility gate draws a small image again larger; it shows the same thing)."""
    canon = json.dumps(spec.model_dump(mode="json", exclude={"width", "height"}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


# --- text ------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    # load_default(size) is the bundled scalable font when FreeType is present, the bitmap font otherwise.
    return ImageFont.load_default(size=max(6, size))


def _base_size(w: int, h: int) -> int:
    return max(8, min(24, round(min(w, h) / 36)))


def _measure(text: str, font: Font) -> tuple[int, int]:
    l, t, r, b = font.getbbox(text)
    return int(r - l), int(b - t)


def _put(draw: Draw, xy: tuple[float, float], text: str, font: Font, anchor: str = "mm", fill: RGB = BLACK) -> None:
    """Draw text placed by its ink box: anchor is horizontal l/m/r then vertical t/m/b."""
    if not text:
        return
    l, t, r, b = font.getbbox(text)
    dx = {"l": 0.0, "m": (r - l) / 2, "r": float(r - l)}[anchor[0]]
    dy = {"t": 0.0, "m": (b - t) / 2, "b": float(b - t)}[anchor[1]]
    draw.text((round(xy[0] - dx - l), round(xy[1] - dy - t)), text, font=font, fill=fill)


def _put_vertical(img: Image.Image, xy: tuple[float, float], text: str, font: Font, anchor: str = "mm") -> None:
    """Text turned 90 degrees counter-clockwise (reads bottom to top); anchor as in _put, on the turned box."""
    if not text:
        return
    l, t, r, b = font.getbbox(text)
    mask = Image.new("L", (int(r - l) + 2, int(b - t) + 2), 0)
    ImageDraw.Draw(mask).text((1 - l, 1 - t), text, font=font, fill=255)
    mask = mask.transpose(Image.Transpose.ROTATE_90)
    w, h = mask.size
    x = xy[0] - {"l": 0, "m": w / 2, "r": w}[anchor[0]]
    y = xy[1] - {"t": 0, "m": h / 2, "b": h}[anchor[1]]
    img.paste(BLACK, (round(x), round(y), round(x) + w, round(y) + h), mask)


def _put_y_label(img: Image.Image, xy: tuple[float, float], text: str, font: Font) -> None:
    """The y axis's name at the left edge, turned to read bottom to top; a name no wider than it
    is tall ("y", "V") stands upright, as in a maths plot: it takes no more room, and turned, a
    lone letter is a different glyph to a reader (the OCR model read a turned "y" as "a)")."""
    w, h = _measure(text, font)
    if w <= h:
        _put(ImageDraw.Draw(img), xy, text, font, "lm")
    else:
        _put_vertical(img, xy, text, font, "lm")


def _fit(texts: list[str], max_w: float, size: int, min_size: int = 7) -> tuple[Font, bool]:
    """Largest font not above `size` whose widest text fits max_w; False when even min_size is too wide."""
    for s in range(size, min_size - 1, -1):
        f = _font(s)
        if max((_measure(t, f)[0] for t in texts), default=0) <= max_w:
            return f, True
    return _font(min_size), False


def _rect(draw: Draw, x0: float, y0: float, x1: float, y1: float, fill: RGB | None = None, outline: RGB | None = None) -> None:
    # Pillow refuses inverted boxes; degenerate specs (tiny canvas, zero values) must still draw.
    xa, xb = sorted((round(x0), round(x1)))
    ya, yb = sorted((round(y0), round(y1)))
    draw.rectangle((xa, ya, xb, yb), fill=fill, outline=outline)


def _title(draw: Draw, spec: ImageSpec, base: int) -> int:
    """Draw the title; return the y where content may start."""
    pad = max(3, base // 2)
    if not spec.title:
        return pad
    font, _ = _fit([spec.title], spec.width - 2 * pad, round(base * 1.3))
    h = _measure("Ag", font)[1]
    _put(draw, (spec.width / 2, pad), spec.title, font, "mt")
    return pad + h + pad * 2


def _colour(name: str | None, i: int, default: str | None = None) -> RGB:
    return PALETTE[name or default or CHART_ORDER[i % len(CHART_ORDER)]]


# --- axes shared by bar and line charts --------------------------------------------------------


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


@dataclass
class _Frame:
    """The plot box and the value-to-pixel mapping of the value axis."""

    left: float
    top: float
    right: float
    bottom: float
    lo: float
    hi: float

    def y(self, v: float) -> float:
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def slot(self, n: int) -> float:
        return (self.right - self.left) / n

    def x(self, i: int, n: int) -> float:
        return self.left + self.slot(n) * (i + 0.5)


def _axes(
    img: Image.Image, spec: BarChart | LineChart, values: list[float], cats: list[str],
    value_texts: list[str], legend_w: float,
) -> tuple[_Frame, Font, bool]:
    """Lay out and draw title, grid, ticks, axis titles and category labels; return the frame and
    the font (and orientation) for value labels so they fit one slot."""
    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    lo, hi = min(0.0, *values), max(0.0, *values)
    if hi - lo < 1e-9:
        hi = lo + 1
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and round(step * 10**decimals) % 1:
        decimals += 1
    ticks = [lo + i * step for i in range(round((hi - lo) / step) + 1)]
    tick_texts = [f"{t:.{decimals}f}" for t in ticks]
    tick_font = _font(base)
    left = pad + max(_measure(t, tick_font)[0] for t in tick_texts) + pad
    if spec.y_label:
        left += _measure("Ag", tick_font)[1] + pad
    right = w - pad - legend_w
    n = len(cats)
    slot = max(1.0, (right - left) / n)
    cat_font, flat = _fit(cats, slot * 0.92, base)
    cat_h = _measure("Ag", cat_font)[1] if flat else max(_measure(c, cat_font)[0] for c in cats)
    cat_h = min(cat_h, h // 3)
    bottom = h - pad - cat_h - pad
    if spec.x_label:
        bottom -= _measure("Ag", tick_font)[1] + pad
    # Values at the ticks' size (not smaller): a reader, and the legibility gate's OCR model,
    # misread 12 px "87" above a bar.
    val_font, val_flat = _fit(value_texts or ["0"], slot * 0.95, base)
    head = _measure("Ag", val_font)[1] if val_flat else max((_measure(t, val_font)[0] for t in value_texts), default=0)
    top += (head + pad + VALUE_GAP) if value_texts else pad
    bottom = max(bottom, top + 2)
    frame = _Frame(left, top, max(right, left + 2), bottom, lo, hi)

    for t, text in zip(ticks, tick_texts):
        y = round(frame.y(t))
        draw.line((round(left), y, round(frame.right), y), fill=GRID)
        _put(draw, (left - pad, y), text, tick_font, "rm")
    draw.line((round(left), round(top), round(left), round(bottom)), fill=BLACK)
    for i, c in enumerate(cats):
        x = frame.x(i, n)
        if flat:
            _put(draw, (x, bottom + pad), c, cat_font, "mt")
        else:
            _put_vertical(img, (x, bottom + pad), c, cat_font, "mt")
    if spec.y_label:
        _put_y_label(img, (pad, (top + bottom) / 2), spec.y_label, _fit([spec.y_label], bottom - top, base)[0])
    if spec.x_label:
        _put(draw, ((left + frame.right) / 2, h - pad), spec.x_label, tick_font, "mb")
    return frame, val_font, val_flat


VALUE_GAP = 5  # pixels between a value and its bar or point: text flush on a bar reads as part of it


def _value_label(img: Image.Image, draw: Draw, x: float, y: float, text: str, font: Font, flat: bool, below: bool = False) -> None:
    gap = VALUE_GAP
    if flat:
        _put(draw, (x, y + gap if below else y - gap), text, font, "mt" if below else "mb")
    else:
        _put_vertical(img, (x, y + gap if below else y - gap), text, font, "mt" if below else "mb")


# --- drawers ---------------------------------------------------------------------------------


def _bar_chart(img: Image.Image, spec: BarChart) -> None:
    draw = ImageDraw.Draw(img)
    values = [b.value for b in spec.bars]
    texts = [fmt_number(v) for v in values] if spec.show_values else []
    frame, vfont, vflat = _axes(img, spec, values, [b.label for b in spec.bars], texts, 0)
    n, zero = len(values), frame.y(0)
    bw = max(1.0, frame.slot(n) * 0.7)
    for i, bar in enumerate(spec.bars):
        x = frame.x(i, n)
        _rect(draw, x - bw / 2, frame.y(bar.value), x + bw / 2 - 1, zero, fill=_colour(bar.color, i, "blue"))
    draw.line((round(frame.left), round(zero), round(frame.right), round(zero)), fill=BLACK)
    for i, text in enumerate(texts):
        v = values[i]
        _value_label(img, draw, frame.x(i, n), frame.y(v), text, vfont, vflat, below=v < 0)


def _line_chart(img: Image.Image, spec: LineChart) -> None:
    draw = ImageDraw.Draw(img)
    base = _base_size(spec.width, spec.height)
    values = [v for s in spec.series for v in s.values]
    texts = [fmt_number(v) for s in spec.series if s.show_values for v in s.values]
    legend_font, legend_w = _font(base), 0.0
    if len(spec.series) > 1:
        legend_font, _ = _fit([s.name for s in spec.series], spec.width * 0.3, base)
        legend_w = max(_measure(s.name, legend_font)[0] for s in spec.series) + 3 * base
    frame, vfont, vflat = _axes(img, spec, values, spec.x_labels, texts, legend_w)
    n, r = len(spec.x_labels), max(2, base // 4)
    width = max(1, base // 6)
    draw.line((round(frame.left), round(frame.y(0)), round(frame.right), round(frame.y(0))), fill=BLACK)
    for j, s in enumerate(spec.series):
        colour = _colour(s.color, j)
        pts = [(frame.x(i, n), frame.y(v)) for i, v in enumerate(s.values)]
        draw.line(pts, fill=colour, width=width, joint="curve")
        for x, y in pts:
            draw.ellipse((round(x - r), round(y - r), round(x + r), round(y + r)), fill=colour)
        if s.show_values:
            for (x, y), v in zip(pts, s.values):
                _value_label(img, draw, x, y - r, fmt_number(v), vfont, vflat)
    if len(spec.series) > 1:
        row = _measure("Ag", legend_font)[1] + base // 2
        x0, y0 = spec.width - legend_w, frame.top
        for j, s in enumerate(spec.series):
            y = y0 + j * row + row / 2
            draw.line((round(x0 + 2), round(y), round(x0 + 2 * base - 4), round(y)), fill=_colour(s.color, j), width=max(2, width))
            _put(draw, (x0 + 2 * base, y), s.name, legend_font, "lm")


def _pie_chart(img: Image.Image, spec: PieChart) -> None:
    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    labels = [s.label for s in spec.slices]
    legend_font, _ = _fit(labels, w * 0.35, base)
    row = _measure("Ag", legend_font)[1] + base // 2
    while len(labels) * row > h - top - pad and legend_font.size > 7:  # type: ignore[union-attr]
        legend_font = _font(legend_font.size - 1)  # type: ignore[union-attr]
        row = _measure("Ag", legend_font)[1] + max(2, base // 3)
    legend_w = max(_measure(t, legend_font)[0] for t in labels) + 2 * base + pad
    pct_font = _font(base)
    margin = _measure("100.0%", pct_font)[0] + pad
    cx = (w - legend_w) / 2
    cy = (top + h) / 2
    # Percent labels sit just outside the rim, so keep half a label width and a line of height free.
    th = _measure("Ag", pct_font)[1]
    radius = max(4.0, min((w - legend_w) / 2 - margin - pad, (h - top) / 2 - margin / 2 - th - pad))
    box = (round(cx - radius), round(cy - radius), round(cx + radius), round(cy + radius))
    total = math.fsum(s.value for s in spec.slices)
    pcts = percent_labels([s.value for s in spec.slices])
    start, acc = -90.0, 0.0
    for i, s in enumerate(spec.slices):
        acc += s.value
        end = 270.0 if i == len(spec.slices) - 1 else -90.0 + 360.0 * acc / total
        if end - start > 1e-6:
            draw.pieslice(box, start, end, fill=_colour(s.color, i))
        mid = math.radians((start + end) / 2)
        lx, ly = cx + (radius + margin / 2) * math.cos(mid), cy + (radius + margin / 2) * math.sin(mid)
        _put(draw, (lx, ly), pcts[i], pct_font, "mm")
        start = end
    x0 = w - legend_w
    y0 = (top + h) / 2 - len(labels) * row / 2
    sw = max(4, row - base // 2)
    for i, s in enumerate(spec.slices):
        y = y0 + i * row + row / 2
        _rect(draw, x0, y - sw / 2, x0 + sw, y + sw / 2, fill=_colour(s.color, i))
        _put(draw, (x0 + sw + pad, y), s.label, legend_font, "lm")


def _table(img: Image.Image, spec: Table) -> None:
    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    grid = [list(spec.columns)] + [[c if isinstance(c, str) else fmt_number(c) for c in row] for row in spec.rows]
    row_h = min(base * 2.4, (h - top - pad) / len(grid))
    size = max(6, min(round(base * 1.15), round(row_h * 0.6)))
    avail = w - 2 * pad
    while True:
        font = _font(size)
        natural = [max(_measure(row[j], font)[0] for row in grid) + 2 * pad for j in range(len(spec.columns))]
        if sum(natural) <= avail or size <= 6:
            break
        size -= 1
    scale = avail / sum(natural)
    widths = [n * min(scale, 1.6) for n in natural]  # widen to fill, but not absurdly
    x0 = (w - sum(widths)) / 2
    xs = [x0]
    for cw in widths:
        xs.append(xs[-1] + cw)
    _rect(draw, xs[0], top, xs[-1], top + row_h, fill=HEADER)
    for i, row in enumerate(grid):
        y = top + i * row_h
        for j, text in enumerate(row):
            _put(draw, ((xs[j] + xs[j + 1]) / 2, y + row_h / 2), text, font, "mm")
    bottom = top + len(grid) * row_h
    for i in range(len(grid) + 1):
        y = round(top + i * row_h)
        draw.line((round(xs[0]), y, round(xs[-1]), y), fill=RULE)
    for x in xs:
        draw.line((round(x), round(top), round(x), round(bottom)), fill=RULE)


def _figure_points(spec: GeometryFigure) -> list[tuple[float, float]]:
    """Vertices in model units, y up."""
    f, s = spec.figure, spec.sides
    if f == "right_triangle":
        return [(0.0, s[0]), (0.0, 0.0), (s[1], 0.0)]
    if f == "rectangle":
        return [(0.0, 0.0), (s[0], 0.0), (s[0], s[1]), (0.0, s[1])]
    if s:
        ab, bc, ca = s
    else:  # law of sines: each side is proportional to the sine of the opposite angle
        a, b, c = (math.radians(x) for x in spec.angles)
        ab, bc, ca = math.sin(c), math.sin(a), math.sin(b)
    ax = (ab * ab - ca * ca + bc * bc) / (2 * bc)
    return [(ax, math.sqrt(max(0.0, ab * ab - ax * ax))), (0.0, 0.0), (bc, 0.0)]


def _unit(dx: float, dy: float) -> tuple[float, float]:
    n = math.hypot(dx, dy) or 1.0
    return dx / n, dy / n


def _geometry(img: Image.Image, spec: GeometryFigure) -> None:
    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    # Labels a third larger than a chart's ticks: the reader (and the legibility gate's OCR model)
    # misreads 13 px "9 in" as "gin" on a thin-lined figure.
    font = _font(round(base * 1.35))
    bottom = h - pad - (_measure("Ag", font)[1] + pad if spec.note else 0)
    # Room for the widest side label beside the figure: "10 cm" on a right-hand side was clipped.
    margin = max(base * 3, max((_measure(t, font)[0] for t in spec.side_labels), default=0) + 2 * pad)
    if spec.note:
        _put(draw, (w / 2, h - pad), spec.note, _fit([spec.note], w - 2 * pad, base)[0], "mb")
    if spec.figure == "circle":
        _circle(draw, spec, font, (w / 2, (top + bottom) / 2), max(4.0, min(w / 2, (bottom - top) / 2) - margin))
        return
    model = _figure_points(spec)
    xs, ys = [p[0] for p in model], [p[1] for p in model]
    mw, mh = max(xs) - min(xs) or 1.0, max(ys) - min(ys) or 1.0
    k = max(1e-6, min((w - 2 * margin) / mw, (bottom - top - 2 * margin) / mh))
    ox = (w - mw * k) / 2 - min(xs) * k
    oy = (top + bottom + mh * k) / 2 + min(ys) * k
    pts = [(ox + x * k, oy - y * k) for x, y in model]
    cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    draw.polygon([(round(x), round(y)) for x, y in pts], fill=FIGURE_FILL, outline=BLACK, width=max(2, base // 6))
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    if spec.figure == "rectangle":
        edges = edges[:2] + [(pts[0], pts[2])]  # width AB, height BC, diagonal AC
        if len(spec.side_labels) > 2:
            draw.line([tuple(map(round, pts[0])), tuple(map(round, pts[2]))], fill=RULE, width=1)
    for (p, q), text in zip(edges, spec.side_labels):
        mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
        nx, ny = _unit(-(q[1] - p[1]), q[0] - p[0])
        if (mx - cx) * nx + (my - cy) * ny < 0 or (spec.figure == "rectangle" and p == pts[0] and q == pts[2]):
            nx, ny = -nx, -ny
        tw, th = _measure(text, font)
        off = 0.5 * (abs(nx) * tw + abs(ny) * th) + pad
        _put(draw, (mx + nx * off, my + ny * off), text, font, "mm")
    for i, (x, y) in enumerate(pts):
        ux, uy = _unit(cx - x, cy - y)
        if i < len(spec.vertex_names):
            _put(draw, (x - ux * base, y - uy * base), spec.vertex_names[i], font, "mm")
        if spec.figure == "right_triangle" and i == 1:
            s = base * 0.8
            draw.line([(round(x), round(y - s)), (round(x + s), round(y - s)), (round(x + s), round(y))], fill=BLACK)
        if i < len(spec.angle_labels) and spec.angle_labels[i]:
            a, b = pts[(i - 1) % n], pts[(i + 1) % n]
            r = min(base * 1.3, 0.3 * math.dist(a, (x, y)), 0.3 * math.dist(b, (x, y)))
            t1 = math.degrees(math.atan2(a[1] - y, a[0] - x))
            t2 = math.degrees(math.atan2(b[1] - y, b[0] - x))
            if (t2 - t1) % 360 > 180:
                t1, t2 = t2, t1
            draw.arc((round(x - r), round(y - r), round(x + r), round(y + r)), t1, t2, fill=BLACK)
            bx, by = _unit(*_add(_unit(a[0] - x, a[1] - y), _unit(b[0] - x, b[1] - y)))
            # Out along the bisector until the label clears both sides of a narrow angle.
            tw, th = _measure(spec.angle_labels[i], font)
            half = math.radians(((t2 - t1) % 360) / 2)
            d = max(r + base * 1.2, (max(tw, th) / 2 + pad) / max(0.25, math.sin(half)))
            _put(draw, (x + bx * d, y + by * d), spec.angle_labels[i], font, "mm")


def _add(u: tuple[float, float], v: tuple[float, float]) -> tuple[float, float]:
    return u[0] + v[0], u[1] + v[1]


def _circle(draw: Draw, spec: GeometryFigure, font: Font, c: tuple[float, float], r: float) -> None:
    x, y = c
    lw = max(2, _base_size(spec.width, spec.height) // 6)
    draw.ellipse((round(x - r), round(y - r), round(x + r), round(y + r)), fill=FIGURE_FILL, outline=BLACK, width=lw)
    x0 = x - r if spec.circle_segment == "diameter" else x
    draw.line((round(x0), round(y), round(x + r), round(y)), fill=BLACK, width=max(1, lw // 2))
    draw.ellipse((round(x - 3), round(y - 3), round(x + 3), round(y + 3)), fill=BLACK)
    if spec.side_labels:
        _put(draw, (x + r / 2, y - 6), spec.side_labels[0], font, "mb")  # right half: clear of the centre mark
    if spec.vertex_names:
        _put(draw, (x, y + 8), spec.vertex_names[0], font, "mt")  # clear of the centre mark and its radius


def _shape_points(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "triangle":  # fills its box, so "size" means the same extent for every shape
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "star":
        angles, radii = [-90 + 36 * i for i in range(10)], [r if i % 2 == 0 else r * 0.45 for i in range(10)]
    else:  # hexagon
        angles, radii = [60 * i for i in range(6)], [r] * 6
    return [(cx + q * math.cos(math.radians(a)), cy + q * math.sin(math.radians(a))) for a, q in zip(angles, radii)]


def _shape_scene(img: Image.Image, spec: ShapeScene) -> None:
    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    top = _title(draw, spec, base) if spec.title else 0
    unit = min(w, h)
    font = _font(base)
    for s in spec.shapes:
        cx, cy, r = s.x * w, top + s.y * (h - top), s.size * unit / 2
        colour = PALETTE[s.color]
        if s.shape == "circle":
            draw.ellipse((round(cx - r), round(cy - r), round(cx + r), round(cy + r)), fill=colour)
        else:
            draw.polygon([(round(x), round(y)) for x, y in _shape_points(s.shape, cx, cy, r)], fill=colour)
        if s.label:
            _put(draw, (cx, cy + r + 3), s.label, font, "mt")


_DRAWERS: dict[str, Callable[[Image.Image, ImageSpec], None]] = {
    "bar_chart": _bar_chart,  # type: ignore[dict-item]
    "line_chart": _line_chart,  # type: ignore[dict-item]
    "pie_chart": _pie_chart,  # type: ignore[dict-item]
    "table": _table,  # type: ignore[dict-item]
    "geometry": _geometry,  # type: ignore[dict-item]
    "shape_scene": _shape_scene,  # type: ignore[dict-item]
    # Untrusted documents, drawn only in a worker process under limits (agents.painter.workers).
    "vega_lite": untrusted.draw_vega_lite,  # type: ignore[dict-item]
    "svg": untrusted.draw_svg,  # type: ignore[dict-item]
}


def _register() -> None:
    """The science domains' drawers, each in its own module (RDKit and SchemDraw load when first used)."""
    from cadsynth.agents.painter import chemistry, circuits, genetics, maps, plots

    _DRAWERS.update({
        "molecule": chemistry.draw_molecule,  # type: ignore[dict-item]
        "circuit": circuits.draw_circuit,  # type: ignore[dict-item]
        "function_plot": plots.draw_function_plot,  # type: ignore[dict-item]
        "punnett_square": genetics.draw_punnett_square,  # type: ignore[dict-item]
        "map": maps.draw_map,  # type: ignore[dict-item]
    })


_register()
