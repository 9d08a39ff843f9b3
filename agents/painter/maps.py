"""Schematic maps drawn with Pillow: a kilometre grid with labelled lines, places as dots with
names, straight roads, a scale bar and a north arrow. Drawn to scale (one km is the same number of
pixels both ways), so distances and bearings measured in the picture are the computed ones.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from cadsynth.specs import SchematicMap, fmt_number

LAND = (246, 242, 228)
GRID = (200, 200, 190)
ROAD = (150, 110, 60)
PLACE = (200, 30, 30)


def grid_values(extent: float, step: float) -> list[float]:
    return [k * step for k in range(int(extent / step + 1e-9) + 1)]


def draw_map(img: Image.Image, spec: SchematicMap) -> None:
    from cadsynth.agents.painter.render import BLACK, WHITE, _base_size, _fit, _measure, _put, _rect, _title

    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    tick_font = _font_of(base - 2)
    ticks = grid_values(spec.width_km, spec.grid_km), grid_values(spec.height_km, spec.grid_km)
    left = pad + max(_measure(fmt_number(v), tick_font)[0] for v in ticks[1]) + pad
    bottom_band = _measure("Ag", tick_font)[1] * 2 + 3 * pad + base  # x ticks, then the scale bar
    area_w, area_h = w - left - pad, h - top - bottom_band
    k = max(1e-6, min(area_w / spec.width_km, area_h / spec.height_km))  # pixels per km, both ways
    x0, y1 = left, top + area_h  # the map's bottom-left corner
    y0 = y1 - spec.height_km * k

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + x * k, y1 - y * k

    _rect(draw, x0, y0, x0 + spec.width_km * k, y1, fill=LAND, outline=BLACK)
    for v in ticks[0]:
        gx = round(at(v, 0)[0])
        draw.line((gx, round(y0), gx, round(y1)), fill=GRID)
        _put(draw, (gx, y1 + pad), fmt_number(v), tick_font, "mt")
    for v in ticks[1]:
        gy = round(at(0, v)[1])
        draw.line((round(x0), gy, round(x0 + spec.width_km * k), gy), fill=GRID)
        _put(draw, (x0 - pad, gy), fmt_number(v), tick_font, "rm")
    _rect(draw, x0, y0, x0 + spec.width_km * k, y1, outline=BLACK)
    where = {p.name: at(p.x, p.y) for p in spec.places}
    for road in spec.roads:
        (ax, ay), (bx, by) = where[road.start], where[road.end]
        draw.line((round(ax), round(ay), round(bx), round(by)), fill=ROAD, width=max(2, base // 6))
    name_font, _ = _fit([p.name for p in spec.places], max(40.0, w / 5), base)
    r = max(3, base // 4)
    for p in spec.places:
        x, y = where[p.name]
        draw.ellipse((round(x - r), round(y - r), round(x + r), round(y + r)), fill=PLACE, outline=BLACK)
        tw, th = _measure(p.name, name_font)
        # Beside the dot, on the side with room: right unless it would leave the map. A letter's
        # width away: closer, the OCR model reads the dot as the name's first letter ("4Qslo").
        gap = r + max(6, base // 2)
        right = x + gap + tw <= x0 + spec.width_km * k
        below = y - r - 3 - th < y0
        tx = x + gap if right else x - gap
        ty = y + r + 2 if below else y - r - 2
        box = (tx if right else tx - tw) - 1, (ty if below else ty - th) - 1
        _rect(draw, box[0], box[1], box[0] + tw + 2, box[1] + th + 2, fill=WHITE)
        _put(draw, (tx, ty), p.name, name_font, ("l" if right else "r") + ("t" if below else "b"))
    # Scale bar under the x labels, at the left; its length is scale_km at the map's scale.
    sy = y1 + 2 * pad + _measure("Ag", tick_font)[1] + base // 2
    length = spec.scale_km * k
    _rect(draw, x0, sy, x0 + length / 2, sy + max(3, base // 4), fill=BLACK)
    _rect(draw, x0 + length / 2, sy, x0 + length, sy + max(3, base // 4), fill=WHITE, outline=BLACK)
    _put(draw, (x0 + length + pad, sy + base // 8), f"{fmt_number(spec.scale_km)} km", tick_font, "lm")
    # North arrow in the top-right corner of the map.
    nx, ny, size = x0 + spec.width_km * k - 1.5 * base, y0 + 1.2 * base, base * 1.4
    draw.polygon([(round(nx), round(ny)), (round(nx - size / 3), round(ny + size)), (round(nx + size / 3), round(ny + size))], fill=BLACK)
    _put(draw, (nx, ny + size + 2), "N", _font_of(base), "mt")


def _font_of(size: int):  # type: ignore[no-untyped-def]
    from cadsynth.agents.painter.render import _font

    return _font(max(7, size))
