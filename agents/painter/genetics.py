"""Punnett squares drawn with Pillow: parent1's gametes head the rows, parent2's the columns, each
cell the offspring genotype, a legend of traits underneath. Pillow alone: a grid of text needs no
plotting library, and its bundled font keeps the pixels the same everywhere.
"""

from __future__ import annotations

from itertools import product

from PIL import Image, ImageDraw

from cadsynth.specs import PunnettSquare

HEAD = (232, 232, 232)


def genes(genotype: str) -> list[str]:
    """'AaBb' -> ['Aa', 'Bb']."""
    return [genotype[i : i + 2] for i in range(0, len(genotype), 2)]


def gametes(genotype: str) -> list[str]:
    """Each gamete, one allele per gene, in the usual order: AaBb -> AB, Ab, aB, ab."""
    return ["".join(p) for p in product(*(list(g) for g in genes(genotype)))]


def child(a: str, b: str) -> str:
    """The genotype of two gametes, each gene written capital first: 'Ab' x 'aB' -> 'AaBb'."""
    return "".join("".join(sorted(pair, key=lambda c: (c.islower(), c))) for pair in zip(a, b))


def cells(parent1: str, parent2: str) -> list[str]:
    """The square's genotypes, row by row (rows: parent1's gametes, columns: parent2's)."""
    return [child(a, b) for a in gametes(parent1) for b in gametes(parent2)]


def draw_punnett_square(img: Image.Image, spec: PunnettSquare) -> None:
    from cadsynth.agents.painter.render import BLACK, RULE, _base_size, _fit, _measure, _put, _rect, _title

    draw = ImageDraw.Draw(img)
    w, h, base = spec.width, spec.height, _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    rows, cols = gametes(spec.parent1), gametes(spec.parent2)
    legend = [f"{t.gene}_ : {t.dominant}    {t.gene.lower()}{t.gene.lower()} : {t.recessive}" for t in spec.traits]
    caption = f"Cross: {spec.parent1} (rows) x {spec.parent2} (columns)"
    lines = [caption, *legend]
    text_font, _ = _fit(lines, w - 2 * pad, base)
    line_h = _measure("Ag", text_font)[1] + pad
    bottom = h - pad - line_h * len(lines)
    n = len(cols)
    cell = max(8.0, min((w - 2 * pad) / (n + 1), (bottom - top - pad) / (len(rows) + 1)))
    x0 = (w - cell * (n + 1)) / 2
    y0 = top + max(0.0, (bottom - top - cell * (len(rows) + 1)) / 2)
    font, _ = _fit([child(rows[0], cols[0])], cell * 0.85, round(base * 1.3))
    for j, g in enumerate(cols):
        _rect(draw, x0 + (j + 1) * cell, y0, x0 + (j + 2) * cell, y0 + cell, fill=HEAD)
        _put(draw, (x0 + (j + 1.5) * cell, y0 + cell / 2), g, font)
    for i, g in enumerate(rows):
        _rect(draw, x0, y0 + (i + 1) * cell, x0 + cell, y0 + (i + 2) * cell, fill=HEAD)
        _put(draw, (x0 + cell / 2, y0 + (i + 1.5) * cell), g, font)
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            cx, cy = x0 + (j + 1.5) * cell, y0 + (i + 1.5) * cell
            if spec.fill_cells:
                _put(draw, (cx, cy), child(a, b), font)
    for k in range(len(rows) + 2):
        y = round(y0 + k * cell)
        draw.line((round(x0 if k != 0 else x0 + cell), y, round(x0 + (n + 1) * cell), y), fill=RULE)
    for k in range(n + 2):
        x = round(x0 + k * cell)
        draw.line((x, round(y0 if k != 0 else y0 + cell), x, round(y0 + (len(rows) + 1) * cell)), fill=RULE)
    draw.line((round(x0 + cell), round(y0 + cell), round(x0 + (n + 1) * cell), round(y0 + cell)), fill=BLACK, width=2)
    draw.line((round(x0 + cell), round(y0 + cell), round(x0 + cell), round(y0 + (len(rows) + 1) * cell)), fill=BLACK, width=2)
    for k, line in enumerate(lines):
        _put(draw, (w / 2, bottom + pad + k * line_h), line, text_font, "mt")
