"""Drawers for the untrusted kinds: a model-written Vega-Lite spec or SVG document.

Each draws what cadsynth.untrusted let through and nothing else: the document is checked again
and cleaned here (so a spec that skipped validation still cannot reach a renderer unchecked), then
drawn by a renderer that runs no browser and fetches nothing: vl-convert (Vega-Lite in an embedded
JavaScript engine, its data loader allowed no base URL) and resvg (SVG in Rust, system fonts
skipped, resources resolved in an empty folder). Both run inside the painter's worker processes,
under the time and memory limits agents.painter.workers sets.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cadsynth.specs import SvgImage, VegaLiteChart
from cadsynth.untrusted import clean_svg, clean_vega_lite


class RenderRefused(ValueError):
    """A spec the painter would not or could not draw within its limits; the message says why."""


# A renderer's image may be larger than the canvas (Vega-Lite's fit is approximate): by this much
# at most on a side before it is refused rather than scaled down.
_OVERSIZE = 2


@lru_cache(maxsize=1)
def fonts() -> str:
    """The fonts both renderers get: DejaVu as matplotlib ships it, the same on every machine
    (no system font is read, and a document can name no font file of its own)."""
    spec = importlib.util.find_spec("matplotlib")
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")


@lru_cache(maxsize=1)
def _empty_folder() -> str:
    # resvg resolves relative references against a folder; this one holds nothing to read.
    return tempfile.mkdtemp(prefix="cads-resvg-")


@lru_cache(maxsize=1)
def _vega() -> object:
    import vl_convert

    vl_convert.register_font_directory(fonts())
    return vl_convert


def draw_vega_lite(img: Image.Image, spec: VegaLiteChart) -> None:
    doc = clean_vega_lite(spec.vega_lite)
    # The canvas is the spec's width x height whatever the model wrote: fit, padding included.
    doc["width"], doc["height"] = spec.width, spec.height
    doc["autosize"] = {"type": "fit", "contains": "padding"}
    if spec.title and "title" not in doc:
        doc["title"] = spec.title
    doc.setdefault("background", "white")
    vl = _vega()
    try:
        png = vl.vegalite_to_png(doc, scale=1, allowed_base_urls=[])  # type: ignore[attr-defined]
    except ValueError as exc:
        raise RenderRefused(f"vega-lite could not draw it: {_first_line(exc)}") from None
    _paste(img, png, (0, 0, spec.width, spec.height))


def draw_svg(img: Image.Image, spec: SvgImage) -> None:
    doc = clean_svg(spec.svg)
    top = _title(img, spec.title) if spec.title else 0
    box = (0, top, spec.width, spec.height)
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(
            svg_string=doc, width=spec.width, background="white", skip_system_fonts=True,
            font_dirs=[fonts()], font_family="DejaVu Sans", sans_serif_family="DejaVu Sans",
            serif_family="DejaVu Serif", monospace_family="DejaVu Sans Mono", resources_dir=_empty_folder(),
        )
    except ValueError as exc:
        raise RenderRefused(f"the svg could not be drawn: {_first_line(exc)}") from None
    _paste(img, png, box)


def _first_line(exc: Exception) -> str:
    """The line of a renderer's message that says what went wrong (not its stack trace)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return next((line for line in lines if "Error" in line), lines[0])[:200]


def _paste(img: Image.Image, png: bytes, box: tuple[int, int, int, int]) -> None:
    """The renderer's PNG fitted into `box` of the canvas, centred; its size read from the header
    first, so an oversized one is refused before it is decoded."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise RenderRefused("the renderer returned no PNG")
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    bw, bh = box[2] - box[0], box[3] - box[1]
    if w > _OVERSIZE * img.width or h > _OVERSIZE * img.height:
        raise RenderRefused(f"the renderer drew {w}x{h} pixels for a {img.width}x{img.height} canvas")
    with Image.open(io.BytesIO(png)) as drawn:
        layer = drawn.convert("RGBA")
    if layer.width > bw or layer.height > bh:
        layer.thumbnail((bw, bh), Image.Resampling.LANCZOS)
    at = (box[0] + (bw - layer.width) // 2, box[1] + (bh - layer.height) // 2)
    img.paste(layer, at, layer)


def _title(img: Image.Image, title: str) -> int:
    """The spec's title over the document, as the other kinds print theirs; returns its height."""
    size = max(10, min(28, round(min(img.width, img.height) / 30)))
    font = ImageFont.truetype(str(Path(fonts()) / "DejaVuSans.ttf"), size)
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, size // 2), title, fill=(0, 0, 0), font=font, anchor="mt")
    return round(size * 2)
