"""Hostile image specs, and the traps that tell whether a renderer fell for one.

The corpus is what a model (or whoever steers one) could write in a spec to make the painter read
a file, fetch a URL, run code or exhaust a worker: each case is the spec's JSON, built against a
`Trap` (a local HTTP server that records every request, and a canary file whose access time shows
a read). tests/test_hostile_specs.py and bench/hostile.py run every case; each must be refused.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SVG = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


class Trap:
    """A local HTTP server that records any fetch, and canary files whose reads show.

    A canary's access time is set an hour before its modification time: under relatime (and
    strictatime) the first read after that moves it, so `canaries_read` sees any open-and-read."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fetches: list[str] = []
        trap = self

        class Recorder(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                trap.fetches.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'[{"a": "x", "b": 1}]')

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.canaries = {name: folder / name for name in ("canary.png", "canary.svg", "canary.json", "canary.css")}
        for path in self.canaries.values():
            path.write_bytes(_tiny_png() if path.suffix == ".png" else b'{"secret": 1}')
        self.arm()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self) -> None:
        for path in self.canaries.values():
            st = path.stat()
            os.utime(path, (st.st_mtime - 3600, st.st_mtime))
        self._armed = {name: path.stat().st_atime for name, path in self.canaries.items()}

    def canaries_read(self) -> list[str]:
        return [name for name, path in self.canaries.items() if path.stat().st_atime > self._armed[name]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _tiny_png(width: int = 2, height: int = 2) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge image (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the spec kind it attacks
    build: Callable[[Trap], dict[str, Any]]


def _svg(body: str, attrs: str = 'viewBox="0 0 100 100"') -> Callable[[Trap], dict[str, Any]]:
    return lambda trap: {"kind": "svg", "svg": f"<svg {SVG} {attrs}>{body.format(url=trap.url, dir=trap.folder)}</svg>"}


def _svg_raw(make: Callable[[Trap], str]) -> Callable[[Trap], dict[str, Any]]:
    return lambda trap: {"kind": "svg", "svg": make(trap)}


def _vl(make: Callable[[Trap], Any]) -> Callable[[Trap], dict[str, Any]]:
    def build(trap: Trap) -> dict[str, Any]:
        spec = make(trap)
        return {"kind": "vega_lite", "vega_lite": spec if isinstance(spec, str) else json.dumps(spec)}

    return build


def _chart(data: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"data": data, "mark": "bar", "encoding": {"x": {"field": "a", "type": "nominal"}, "y": {"field": "b", "type": "quantitative"}}, **more}


def _use_bomb(levels: int, fan: int) -> str:
    """Ten <use>s of a group of ten <use>s of ...: fan**levels rectangles drawn from a few hundred bytes."""
    defs = ['<g id="l0"><rect width="1" height="1"/></g>']
    for i in range(1, levels + 1):
        defs.append(f'<g id="l{i}">' + "".join(f'<use href="#l{i - 1}" x="{k}"/>' for k in range(fan)) + "</g>")
    return f'<svg {SVG} viewBox="0 0 100 100"><defs>{"".join(defs)}</defs><use href="#l{levels}"/></svg>'


def _pattern_bomb(levels: int, fan: int) -> str:
    """Patterns whose tiles fill with the next pattern: nested pattern references, fan**levels deep."""
    pats = ['<pattern id="p0" width="2" height="2" patternUnits="userSpaceOnUse"><rect width="1" height="1" fill="red"/></pattern>']
    for i in range(1, levels + 1):
        rects = "".join(f'<rect x="{k}" width="1" height="1" fill="url(#p{i - 1})"/>' for k in range(fan))
        pats.append(f'<pattern id="p{i}" width="4" height="4" patternUnits="userSpaceOnUse">{rects}</pattern>')
    return f'<svg {SVG} viewBox="0 0 100 100"><defs>{"".join(pats)}</defs><rect width="100" height="100" fill="url(#p{levels})"/></svg>'


CASES: list[Case] = [
    # --- SVG: entities and DTDs
    Case("svg_xxe_file", "svg", _svg_raw(lambda t: f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg {SVG}><text>&x;</text></svg>')),
    Case("svg_xxe_canary", "svg", _svg_raw(lambda t: f'<!DOCTYPE svg [<!ENTITY x SYSTEM "file://{t.canaries["canary.json"]}">]><svg {SVG}><text>&x;</text></svg>')),
    Case("svg_xxe_http", "svg", _svg_raw(lambda t: f'<!DOCTYPE svg [<!ENTITY x SYSTEM "{t.url}/xxe">]><svg {SVG}><text>&x;</text></svg>')),
    Case("svg_external_dtd", "svg", _svg_raw(lambda t: f'<!DOCTYPE svg SYSTEM "{t.url}/svg.dtd"><svg {SVG}/>')),
    Case("svg_billion_laughs", "svg", _svg_raw(lambda t: '<!DOCTYPE svg [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                                                          '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
                                                          f']><svg {SVG}><text>&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;</text></svg>')),
    # --- SVG: references outside the document
    Case("svg_image_file_passwd", "svg", _svg('<image href="file:///etc/passwd" width="10" height="10"/>')),
    Case("svg_image_file_canary", "svg", _svg('<image href="file://{dir}/canary.png" width="10" height="10"/>')),
    Case("svg_image_http", "svg", _svg('<image xlink:href="{url}/image.png" width="10" height="10"/>')),
    Case("svg_image_relative_canary", "svg", _svg('<image href="canary.png" width="10" height="10"/>')),
    Case("svg_use_external", "svg", _svg('<use href="{url}/sprite.svg#a"/>')),
    Case("svg_use_relative_canary", "svg", _svg('<use href="canary.svg#a"/>')),
    Case("svg_fill_url_http", "svg", _svg('<rect width="10" height="10" fill="url({url}/paint.svg#p)"/>')),
    Case("svg_style_import", "svg", _svg('<style>@import url("{url}/style.css");</style><rect width="1" height="1"/>')),
    Case("svg_font_face", "svg", _svg('<text style="font-family: evil; src: url({url}/font.ttf)">x</text>')),
    Case("svg_style_attr_import", "svg", _svg('<g style="@import \'canary.css\'"><rect width="1" height="1"/></g>')),
    Case("svg_feimage", "svg", _svg('<filter id="f"><feImage href="{url}/f.png"/></filter><rect width="5" height="5" filter="url(#f)"/>')),
    Case("svg_foreign_object", "svg", _svg('<foreignObject width="10" height="10"><iframe xmlns="http://www.w3.org/1999/xhtml" src="{url}/frame"/></foreignObject>')),
    Case("svg_script", "svg", _svg('<script>fetch("{url}/script")</script>')),
    Case("svg_onload", "svg", _svg('<rect width="5" height="5" onload="fetch(\'{url}/onload\')"/>')),
    # --- SVG: blow-ups and size
    Case("svg_use_self_recursion", "svg", _svg('<g id="g"><rect width="1" height="1"/><use href="#g"/></g>')),
    Case("svg_use_mutual_recursion", "svg", _svg('<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g>')),
    Case("svg_use_exponential", "svg", _svg_raw(lambda t: _use_bomb(9, 10))),
    Case("svg_pattern_exponential", "svg", _svg_raw(lambda t: _pattern_bomb(8, 10))),
    Case("svg_pattern_cycle", "svg", _svg('<pattern id="p" width="2" height="2"><rect width="1" height="1" fill="url(#p)"/></pattern><rect width="9" height="9" fill="url(#p)"/>')),
    Case("svg_100k_elements", "svg", _svg_raw(lambda t: f"<svg {SVG}>" + "<g/>" * 100_000 + "</svg>")),
    Case("svg_huge_canvas", "svg", _svg('<rect width="1000000" height="1000000" fill="red"/>', 'width="1000000" height="1000000"')),
    Case("svg_huge_viewbox", "svg", _svg('<rect width="1" height="1"/>', 'viewBox="0 0 1e12 1e12"')),
    Case("svg_data_uri_50mb", "svg", _svg_raw(lambda t: f'<svg {SVG}><image href="data:image/png;base64,{"A" * 50_000_000}"/></svg>')),
    Case("svg_data_uri_bomb", "svg", _svg_raw(lambda t: f'<svg {SVG}><image href="data:image/png;base64,{base64.b64encode(_png_claiming(5_000, 5_000)).decode()}"/></svg>')),
    Case("svg_data_uri_svg", "svg", _svg('<image href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="/>')),
    Case("svg_deep_nesting", "svg", _svg_raw(lambda t: f"<svg {SVG}>" + "<g>" * 10_000 + "</g>" * 10_000 + "</svg>")),
    Case("svg_malformed", "svg", _svg_raw(lambda t: f"<svg {SVG}><rect width='1'><g></rect>")),
    Case("svg_not_svg", "svg", _svg_raw(lambda t: f'<html xmlns="http://www.w3.org/1999/xhtml"><img src="{t.url}/x.png"/></html>')),
    # --- Vega-Lite: URL data sources, code, size
    Case("vl_data_url_http", "vega_lite", _vl(lambda t: _chart({"url": f"{t.url}/data.json"}))),
    Case("vl_data_url_passwd", "vega_lite", _vl(lambda t: _chart({"url": "file:///etc/passwd", "format": {"type": "csv"}}))),
    Case("vl_data_url_canary_absolute", "vega_lite", _vl(lambda t: _chart({"url": f"file://{t.canaries['canary.json']}"}))),
    Case("vl_data_url_relative_canary", "vega_lite", _vl(lambda t: _chart({"url": "canary.json"}))),
    Case("vl_layer_data_url", "vega_lite", _vl(lambda t: {"layer": [_chart({"url": f"{t.url}/layer.json"})]})),
    Case("vl_datasets_url", "vega_lite", _vl(lambda t: {**_chart({"name": "d"}), "datasets": {"d": f"{t.url}/d.json"}})),
    Case("vl_image_mark", "vega_lite", _vl(lambda t: {"data": {"values": [{"u": f"{t.url}/i.png"}]}, "mark": "image", "encoding": {"url": {"field": "u"}}})),
    Case("vl_url_in_values", "vega_lite", _vl(lambda t: _chart({"values": [{"a": f"{t.url}/v", "b": 1}]}))),
    Case("vl_expression", "vega_lite", _vl(lambda t: _chart({"values": [{"a": "x", "b": 1}]}, transform=[{"calculate": "datum.b * 2", "as": "c"}]))),
    Case("vl_signal_param", "vega_lite", _vl(lambda t: _chart({"values": [{"a": "x", "b": 1}]}, params=[{"name": "p", "expr": "'x'"}]))),
    Case("vl_label_expr", "vega_lite", _vl(lambda t: {**_chart({"values": [{"a": "x", "b": 1}]}), "config": {"axis": {"labelExpr": "datum.label"}}})),
    Case("vl_facet_blowup", "vega_lite", _vl(lambda t: {**_chart({"values": [{"a": str(i), "b": i} for i in range(50)]}), "encoding": {"row": {"field": "a"}, "column": {"field": "b"}}})),
    Case("vl_too_many_rows", "vega_lite", _vl(lambda t: _chart({"values": [{"a": "x", "b": i} for i in range(3_000)]}))),
    Case("vl_deep_json", "vega_lite", _vl(lambda t: "[" * 50_000 + "]" * 50_000)),
    Case("vl_not_json", "vega_lite", _vl(lambda t: "{'mark': bar")),
    Case("vl_nan", "vega_lite", _vl(lambda t: '{"data": {"values": [{"a": "x", "b": NaN}]}, "mark": "bar"}')),
    # --- the declarative domain kinds: refused by their schema or, what it lets through, their renderer
    Case("molecule_invalid_smiles", "molecule", lambda t: {"kind": "molecule", "smiles": "C1CC(C"}),
    Case("molecule_huge_smiles", "molecule", lambda t: {"kind": "molecule", "smiles": "C" * 200_000}),
    Case("function_invalid_expression", "function_plot", lambda t: {"kind": "function_plot", "x_min": -5, "x_max": 5, "curves": [{"label": "f", "expr": "__import__('os').system('id')"}]}),
    Case("function_huge_expression", "function_plot", lambda t: {"kind": "function_plot", "x_min": -5, "x_max": 5, "curves": [{"label": "f", "expr": "x^" * 50_000 + "x"}]}),
    Case("function_power_tower", "function_plot", lambda t: {"kind": "function_plot", "x_min": -5, "x_max": 5, "curves": [{"label": "f", "expr": "9^9^9^9^9"}]}),
]
