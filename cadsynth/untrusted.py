"""Checks on documents a model writes for the painter: SVG and Vega-Lite, both untrusted input.

A document is refused here, before any renderer sees it, unless it is small, shallow, and names
nothing outside itself: no DTD or entity, no http:, file: or relative reference, no external font
or style sheet, no script or expression, only small inline images. What passes is handed on in a
cleaned form (the SVG re-serialized from the checked tree, the Vega-Lite spec re-dumped with its
inline data), so the renderer draws exactly what was checked. The painter's workers add the limits
a check cannot see (wall time, memory, output size): agents.painter.workers.

Part of the domain (cadsynth.specs validates with it), so this module imports no renderer.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as safe_xml  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]

# --- limits ---------------------------------------------------------------------------------------
MAX_SVG_CHARS = 1_000_000
MAX_ELEMENTS = 10_000
MAX_DEPTH = 24
# Elements drawn once every <use> and url(#id) is followed: what a reference chain can blow up to.
MAX_EXPANDED = 50_000
MAX_DATA_URI = 100_000  # characters of one inline image
MAX_DATA_TOTAL = 300_000  # characters of all inline images together
MAX_INLINE_PIXELS = 4_000_000
MAX_COORD = 100_000.0  # a root width, height or viewBox number
MAX_VEGA_CHARS = 100_000
MAX_VEGA_NODES = 20_000
MAX_VEGA_ROWS = 2_000

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

# What an SVG may contain: shapes, text, paint servers, clipping, reuse, inline raster images.
# Left out on purpose: script, style (CSS can @import and load fonts), foreignObject (HTML),
# filter and fe* (expensive, feImage fetches), a (links), switch, font and font-face.
SVG_ELEMENTS = frozenset(
    "svg g defs title desc symbol use rect circle ellipse line polyline polygon path text tspan "
    "textPath linearGradient radialGradient stop clipPath mask pattern marker image".split()
)
_HREF = re.compile(r"^#[A-Za-z_][\w.\-]*$")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg);base64,([A-Za-z0-9+/=\s]*)$")
_URL_REF = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)\s*(px)?\s*$")
# Properties whose url(#id) makes the renderer draw another element (a chain the expansion counts).
_PAINT_REFS = ("fill", "stroke", "clip-path", "mask", "marker-start", "marker-mid", "marker-end", "style")


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, name = tag[1:].split("}", 1)
        return ns, name
    return None, tag


def clean_svg(text: str) -> str:
    """The SVG re-serialized from its checked tree, or ValueError naming the first problem."""
    if len(text) > MAX_SVG_CHARS:
        raise ValueError(f"the svg has {len(text):,} characters; at most {MAX_SVG_CHARS:,} are drawn")
    try:
        # No DTD at all: entities (billion laughs, external entities) cannot even be declared.
        root = safe_xml.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ValueError(f"the svg declares a DTD or entity ({type(exc).__name__}); write plain SVG without <!DOCTYPE>") from None
    except ET.ParseError as exc:
        raise ValueError(f"the svg is not well-formed XML: {exc}") from None
    except RecursionError:
        raise ValueError(f"the svg nests deeper than {MAX_DEPTH} elements") from None
    ns, name = _local(root.tag)
    if name != "svg" or ns != SVG_NS:
        raise ValueError(f'the root element must be <svg xmlns="{SVG_NS}">, not {root.tag!r}')
    _check_canvas(root)
    ids: dict[str, ET.Element] = {}
    refs: dict[int, list[str]] = {}
    count, data_total = 0, 0
    stack: list[tuple[ET.Element, int]] = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        count += 1
        if count > MAX_ELEMENTS:
            raise ValueError(f"the svg has more than {MAX_ELEMENTS:,} elements")
        if depth > MAX_DEPTH:
            raise ValueError(f"the svg nests deeper than {MAX_DEPTH} elements")
        ns, name = _local(el.tag)
        if ns != SVG_NS or name not in SVG_ELEMENTS:
            raise ValueError(f"<{name}> is not drawn here (allowed: {', '.join(sorted(SVG_ELEMENTS))})")
        targets: list[str] = []
        for key, value in el.attrib.items():
            data_total += _check_attribute(name, key, value, targets)
            if data_total > MAX_DATA_TOTAL:
                raise ValueError(f"the svg's inline images add up to over {MAX_DATA_TOTAL:,} characters")
        if el.get("id"):
            ids[el.get("id", "")] = el
        refs[id(el)] = targets
        stack.extend((child, depth + 1) for child in el)
    _check_expansion(root, ids, refs)
    return ET.tostring(root, encoding="unicode")


def _check_canvas(root: ET.Element) -> None:
    for key in ("width", "height"):
        value = root.get(key)
        if value is None or value.strip().endswith("%"):
            continue
        m = _NUMBER.match(value)
        if not m:
            raise ValueError(f"svg {key}={value!r}: give a number of pixels")
        if not 0 < float(m.group(1)) <= MAX_COORD:
            raise ValueError(f"svg {key}={value!r} is out of range; the canvas is at most {MAX_COORD:g} units")
    box = root.get("viewBox")
    if box is not None:
        parts = box.replace(",", " ").split()
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 4 or not all(math.isfinite(n) and abs(n) <= MAX_COORD for n in numbers):
            raise ValueError(f"svg viewBox={box!r}: give four numbers within +-{MAX_COORD:g}")


def _check_attribute(element: str, key: str, value: str, targets: list[str]) -> int:
    """Refuses an attribute that names anything outside the document; returns inline image size."""
    ns, name = _local(key)
    if name.startswith("on"):
        raise ValueError(f"<{element}> has an event handler ({name}); nothing in an svg runs here")
    if name == "href" and ns in (None, XLINK_NS):
        if _HREF.match(value):
            targets.append(value[1:])
            return 0
        if element == "image":
            m = _DATA_IMAGE.match(value)
            if m is None:
                raise ValueError(f"<image> href {value[:60]!r}: only data:image/png or jpeg base64 URIs are drawn")
            if len(value) > MAX_DATA_URI:
                raise ValueError(f"an inline image has {len(value):,} characters; at most {MAX_DATA_URI:,}")
            _check_inline_image(m.group(2))
            return len(value)
        raise ValueError(f"<{element}> href {value[:60]!r} points outside the document; only #id references are drawn")
    if ns is not None and ns not in (XLINK_NS, SVG_NS) and not ns.startswith("http://www.w3.org/XML/"):
        raise ValueError(f"<{element}> has a foreign attribute {key!r}")
    lowered = value.lower()
    if "@import" in lowered or "@font-face" in lowered or "expression(" in lowered:
        raise ValueError(f"<{element}> {name}: style rules that load anything are not drawn")
    for m in _URL_REF.finditer(value):
        ref = m.group(2).strip()
        if not _HREF.match(ref):
            raise ValueError(f"<{element}> {name} names url({ref[:60]}); only url(#id) references are drawn")
        if name in _PAINT_REFS:
            targets.append(ref[1:])
    if "url(" in lowered and not _URL_REF.search(value):
        raise ValueError(f"<{element}> {name} has a malformed url(...)")
    return 0


def _check_inline_image(data: str) -> None:
    """A small header-checked raster: a 100 KB PNG can still decode to a gigapixel."""
    from PIL import Image  # the header only; nothing is decoded

    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            w, h = img.size
    except Exception:  # any decoder complaint: not an image worth drawing
        raise ValueError("an inline image is not a readable PNG or JPEG") from None
    if w * h > MAX_INLINE_PIXELS:
        raise ValueError(f"an inline image is {w}x{h} pixels; at most {MAX_INLINE_PIXELS:,} pixels")


def _check_expansion(root: ET.Element, ids: dict[str, ET.Element], refs: dict[int, list[str]]) -> None:
    """Counts the elements drawn once every reference is followed, refusing a cycle or a blow-up
    (each of ten <use>s naming a group of ten <use>s, and so on, grows tenfold a level)."""
    weight: dict[int, int] = {}
    visiting: set[int] = set()

    def expanded(el: ET.Element, depth: int) -> int:
        key = id(el)
        if key in weight:
            return weight[key]
        if key in visiting:
            raise ValueError(f"the svg's references form a cycle through id {el.get('id')!r}")
        if depth > 4 * MAX_DEPTH:
            raise ValueError("the svg's references nest too deep")
        visiting.add(key)
        total = 1
        for child in el:
            total += expanded(child, depth + 1)
            if total > MAX_EXPANDED:
                break
        for target in refs.get(key, []):
            if target not in ids:
                raise ValueError(f"the svg references #{target}, which it does not define")
            total += expanded(ids[target], depth + 1)
            if total > MAX_EXPANDED:
                break
        visiting.discard(key)
        if total > MAX_EXPANDED:
            raise ValueError(f"the svg's references expand to over {MAX_EXPANDED:,} drawn elements")
        weight[key] = total
        return total

    expanded(root, 0)


# --- Vega-Lite ------------------------------------------------------------------------------------
# Keys that fetch, run an expression, or multiply the canvas. Vega expressions are code (a
# sandboxed language, but written by the model); URLs are fetched by the renderer: vl-convert's
# allowed_base_urls=[] stops http but not file: URLs, so the spec itself must name none.
_VEGA_FORBIDDEN = {
    "url": "data and images come inline (data.values), never from a URL",
    "href": "links are not drawn",
    "expr": "expressions are model-written code; give literal values",
    "signal": "signals are expressions; give literal values",
    "params": "parameters are expressions; give literal values",
    "selection": "selections are interactive; give a static chart",
    "transform": "transforms run expressions; give the data already computed",
    "test": "conditions run expressions; encode with fields instead",
    "formatType": "custom formatters run code",
    "customFormatTypes": "custom formatters run code",
    "loader": "loaders fetch data",
    "facet": "facets multiply the canvas; draw one chart",
    "repeat": "repeats multiply the canvas; draw one chart",
    "concat": "concatenation multiplies the canvas; draw one chart",
    "hconcat": "concatenation multiplies the canvas; draw one chart",
    "vconcat": "concatenation multiplies the canvas; draw one chart",
    "row": "row facets multiply the canvas; draw one chart",
    "column": "column facets multiply the canvas; draw one chart",
    "datasets": "give the data inline in data.values",
    "usermeta": "usermeta is not drawn",
}
_VEGA_TOP = {"$schema", "description", "title", "data", "mark", "encoding", "layer", "config", "background", "padding", "resolve", "width", "height", "autosize", "view"}
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:", re.ASCII)
_PLAIN_COLON = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:\s", re.ASCII)  # "Note: ..." is text


def clean_vega_lite(text: str) -> dict[str, Any]:
    """The Vega-Lite spec as the renderer gets it (inline data only), or ValueError naming the
    first problem. The renderer sizes it to the canvas."""
    if len(text) > MAX_VEGA_CHARS:
        raise ValueError(f"the Vega-Lite spec has {len(text):,} characters; at most {MAX_VEGA_CHARS:,}")
    if _nesting(text) > MAX_DEPTH:
        raise ValueError(f"the Vega-Lite spec nests deeper than {MAX_DEPTH} levels")
    try:
        spec = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise ValueError(f"the Vega-Lite spec is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError("the Vega-Lite spec must be a JSON object")
    extra = sorted(set(spec) - _VEGA_TOP)
    if extra:
        raise ValueError(f"Vega-Lite key {extra[0]!r} is not drawn here (allowed at the top: {', '.join(sorted(_VEGA_TOP))})")
    spec.pop("$schema", None)  # a URL by design; the renderer's own Vega-Lite version draws it
    nodes = _walk_vega(spec, "spec", 0)
    if nodes > MAX_VEGA_NODES:
        raise ValueError(f"the Vega-Lite spec has {nodes:,} values; at most {MAX_VEGA_NODES:,}")
    layers = [(f"layer[{i}].", x) for i, x in enumerate(spec.get("layer") or []) if isinstance(x, dict)]
    for where, part in [("", spec), *layers]:
        data = part.get("data")
        if data is None:
            continue
        if not isinstance(data, dict) or set(data) - {"values", "name", "format"} or "values" not in data:
            raise ValueError(f"Vega-Lite {where}data must be {{\"values\": [...]}}: inline rows only")
        if not isinstance(data["values"], list) or len(data["values"]) > MAX_VEGA_ROWS:
            raise ValueError(f"Vega-Lite {where}data.values must be a list of at most {MAX_VEGA_ROWS:,} rows")
        fmt = data.get("format")
        if fmt is not None and (not isinstance(fmt, dict) or set(fmt) - {"type", "parse"} or fmt.get("type", "json") != "json"):
            raise ValueError(f"Vega-Lite {where}data.format: only inline JSON rows are drawn")
    mark = _mark(spec.get("mark"))
    if mark == "image" or any(_mark(x.get("mark")) == "image" for x in spec.get("layer") or [] if isinstance(x, dict)):
        raise ValueError("image marks load pictures from URLs; they are not drawn here")
    return spec


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _mark(mark: Any) -> Any:
    return mark.get("type") if isinstance(mark, dict) else mark


def _nesting(text: str) -> int:
    """The deepest bracket nesting, counted before json.loads recurses into it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _walk_vega(node: Any, where: str, count: int) -> int:
    """Counts values, refusing a forbidden key or a string that names a URL."""
    count += 1
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _VEGA_FORBIDDEN or (isinstance(key, str) and key.endswith("Expr")):
                reason = _VEGA_FORBIDDEN.get(key, "label expressions are model-written code")
                raise ValueError(f"Vega-Lite {where}.{key}: {reason}")
            count = _walk_vega(value, f"{where}.{key}", count)
            if count > MAX_VEGA_NODES:
                return count
    elif isinstance(node, list):
        for i, value in enumerate(node):
            count = _walk_vega(value, f"{where}[{i}]", count)
            if count > MAX_VEGA_NODES:
                return count
    elif isinstance(node, str):
        if ("://" in node or _SCHEME.match(node)) and not _PLAIN_COLON.match(node):
            raise ValueError(f"Vega-Lite {where} = {node[:60]!r} looks like a URL; the spec may name none")
    return count
