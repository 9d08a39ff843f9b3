"""The legibility gate: a real OCR model reads every image back (gates.legibility).

Text in an image is what text-to-image painters get wrong most, and what a renderer gets wrong when
it clips, overlaps or shrinks a label. The reader (agents.reader: Tesseract, offline on the CPU)
reads the image; the texts the spec prints and the question names must be among what it read, a
number in any of its formats (1,000 or 1000; 12.50 or 12.5; 25%). When the question names none of
them, most of what the spec prints must be read instead. An image that fails is drawn once more
(a renderer's spec at 1.5 times its size; a painter model asked again, by the next painter, with
the texts it got wrong named) and checked again; a second failure drops the problem as `illegible`.

For a declarative kind this checks the renderer; for a painter model's image, the painter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cadsynth.agents import reader
from cadsynth.config import RunConfig
from cadsynth.domain import Proposal
from cadsynth.graphs.calls import _image, _needs_painter, _paint
from cadsynth.graphs.settings import Resources
from cadsynth.graphs.state import Task
from cadsynth.specs import MAX_SIDE, ImageSpec, fmt_number, percent_labels

log = logging.getLogger(__name__)

# With no text named by the question, at most this share of what the spec prints may go unread.
UNNAMED_MISSING = 0.2
# What a painter model is told when its image is drawn again, before the texts it got wrong.
LETTERING = "Lettering: write each of these exactly as given, large and clearly legible: "
# The size a re-drawn declarative image gets, times its own (at most MAX_SIDE).
REDRAW_SCALE = 1.5


@dataclass(frozen=True)
class Reading:
    """What the gate looked for in an image and what it did not find."""

    wanted: tuple[str, ...]
    missing: tuple[str, ...]
    named: bool  # the wanted texts are those the question names (else: everything printed)

    @property
    def legible(self) -> bool:
        if self.named:
            return not self.missing
        # Nothing in particular asked for: most of it read, and one slip forgiven among three or
        # more (Tesseract drops the "r" of a perfectly clear "r = ?").
        return len(self.missing) <= max(math.floor(len(self.wanted) * UNNAMED_MISSING + 1e-9), 1 if len(self.wanted) >= 3 else 0)


# --- what an image prints ------------------------------------------------------------------------


def printed_texts(spec: ImageSpec | None, visual_prompt: str = "") -> list[str]:
    """The texts the image shows: what the renderer prints for a spec; for a painter model's image
    with no spec, the quoted texts its prompt asks it to write."""
    if spec is None:
        return _unique(re.findall(r"'([^']{1,40})'", visual_prompt))
    return _unique(_PRINTERS.get(spec.kind, _generic)(spec))


def _unique(texts: Any) -> list[str]:
    out: list[str] = []
    for t in texts:
        t = str(t).strip()
        if t and t not in out:
            out.append(t)
    return out


def _num(x: Any) -> str:
    return x if isinstance(x, str) else fmt_number(x)


# Left out of what is looked for: a value axis's title, printed turned 90 degrees, which the reader
# does not read.


def _bar_chart(s: Any) -> list[str]:
    out = [s.title, s.x_label, *(b.label for b in s.bars)]
    return out + ([fmt_number(b.value) for b in s.bars] if s.show_values else [])


def _line_chart(s: Any) -> list[str]:
    out = [s.title, s.x_label, *s.x_labels]
    if len(s.series) > 1:
        out += [x.name for x in s.series]
    return out + [fmt_number(v) for x in s.series if x.show_values for v in x.values]


def _pie_chart(s: Any) -> list[str]:
    return [s.title, *(x.label for x in s.slices), *percent_labels([x.value for x in s.slices])]


def _table(s: Any) -> list[str]:
    return [s.title, *s.columns, *(_num(c) for row in s.rows for c in row)]


def _geometry(s: Any) -> list[str]:
    return [s.title, *s.side_labels, *s.angle_labels, *s.vertex_names, s.note]


def _shape_scene(s: Any) -> list[str]:
    return [s.title, *(x.label or "" for x in s.shapes)]


def _vega_lite(s: Any) -> list[str]:
    """The chart's title and category texts; numbers only where a text mark prints them."""
    doc = json.loads(s.vega_lite)
    layers = [doc, *(x for x in doc.get("layer", []) if isinstance(x, dict))]
    text_fields = {layer.get("encoding", {}).get("text", {}).get("field") for layer in layers}
    out = [s.title, doc.get("title") if isinstance(doc.get("title"), str) else ""]
    for layer in layers:
        for name, channel in layer.get("encoding", {}).items():
            if name != "y" and isinstance(channel, dict) and isinstance(channel.get("title"), str):
                out.append(channel["title"])
        for row in layer.get("data", {}).get("values", []):
            if isinstance(row, dict):
                out += [v for v in row.values() if isinstance(v, str)]
                out += [fmt_number(v) for k, v in row.items() if k in text_fields and isinstance(v, (int, float))]
    return out


def _svg(s: Any) -> list[str]:
    root = ET.fromstring(s.svg)  # already checked (cadsynth.untrusted) when the spec was made
    return [s.title, *("".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text"))]


def _generic(s: Any) -> list[str]:
    """A kind with no printer of its own: every short string under a naming key."""
    naming = {"title", "label", "labels", "name", "names", "x_label", "y_label", "columns", "note"}
    out: list[str] = []

    def walk(node: Any, named: bool) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, named or k in naming)
        elif isinstance(node, list):
            for v in node:
                walk(v, named)
        elif isinstance(node, str) and named and len(node) <= 40:
            out.append(node)

    walk(s.model_dump(mode="json"), False)
    return out


_PRINTERS: dict[str, Callable[[Any], list[str]]] = {
    "bar_chart": _bar_chart, "line_chart": _line_chart, "pie_chart": _pie_chart, "table": _table,
    "geometry": _geometry, "shape_scene": _shape_scene, "vega_lite": _vega_lite, "svg": _svg,
}


# --- matching what was read ------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NUMBER = re.compile(r"(?<![\d.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def _as_number(text: str) -> float | None:
    m = re.fullmatch(r"\s*(-?[\d,]*\.?\d+)\s*%?\s*", text)
    if not m:
        return None
    try:
        return float(m.group(1).replace(",", ""))
    except ValueError:
        return None


# Letters the reader takes a digit for inside a name of letters and digits ("Rl" read for "R1",
# "RS" for "R5"); in such a name a letter is compared as the digit it is mistaken for.
_DIGIT_SLIPS = str.maketrans({"l": "1", "i": "1", "|": "1", "o": "0", "s": "5", "z": "2", "t": "7", "g": "9", "b": "8"})


def _close(a: str, b: str) -> bool:
    """Equal, one of the reader's digit slips in a name of letters and digits, or (for words of four
    letters or more) one edit apart: OCR's usual slip."""
    if a == b:
        return True
    if any(c.isdigit() for c in a) and any(c.isalpha() for c in a) and a.translate(_DIGIT_SLIPS) == b.translate(_DIGIT_SLIPS):
        return True
    if min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


# A lone letter the reader took for another glyph of this font ("&" for "A", "0" for "O", "¥" for
# "y") or doubled ("Cc").
_GLYPH_SLIPS = {"&": "a", "0": "o", "¥": "y"}


def _glyph(line: str) -> str | None:
    """The letter a line of one glyph stands for, if it is one. Rules beside it go: a legend's
    swatch before its curve's name reads as a dash ("—f")."""
    line = line.strip().strip("-–—_ ")
    if not 1 <= len(line) <= 2:
        return None
    letters = {_GLYPH_SLIPS.get(c, c.lower()) for c in line}
    return letters.pop() if len(letters) == 1 and next(iter(letters)).isalpha() else None


class Text:
    """What the reader read, indexed for lookups: its words (lower case) and its numbers."""

    def __init__(self, text: str):
        self.raw = text
        self._compact = re.sub(r"\W+", "", text.lower())
        self.words = [w.lower() for w in _WORD.findall(text)]
        self._word_set = set(self.words)
        self.numbers = {float(m.replace(",", "")) for m in _NUMBER.findall(text)}
        self._glyphs = {_glyph(line) for line in text.splitlines()} - {None}

    def has(self, wanted: str) -> bool:
        if len(wanted) == 1 and wanted.isalpha():
            # A lone letter counts where it stands alone (the reader's line of lone letters) or
            # quoted, not inside prose, where every article "a" would pass for the label "A".
            quoted = re.search(rf"[\'\"‘’“”]{re.escape(wanted)}[\'\"‘’“”]", self.raw, re.IGNORECASE)
            return wanted.lower() in self._glyphs or quoted is not None
        number = _as_number(wanted)
        if number is not None:
            return any(abs(n - number) < 1e-9 for n in self.numbers)
        words = [w.lower() for w in _WORD.findall(wanted)]
        if not words:
            return True  # punctuation alone: nothing a reader could be asked to find
        if len(words) > 1 and "".join(words) in self._compact:
            return True  # read with its spaces lost ("4cm" for "4 cm")
        return all(w in self._word_set or any(_close(w, x) for x in self.words) for w in words)


def named_in(question: str, text: str) -> bool:
    """The question names this text (a word or number standing on its own in it)."""
    # A single letter ("the shape labelled A") as written: case-blind, every article "a" would name it.
    flags = 0 if len(text) == 1 else re.IGNORECASE
    return re.search(rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)", question, flags) is not None


def wanted(spec: ImageSpec | None, question: str, visual_prompt: str = "", *, painted: bool = False) -> tuple[list[str], bool]:
    """The texts the reader must find, and whether they are those the question names (else every
    text printed; none for an image that prints nothing the reader can be asked for). A painter
    model's image (`painted`) is asked for no lone letter: where a renderer prints a vertex's
    letter alone, a painter may run it into other text, and the reader finds a letter only alone."""
    printed = [t for t in printed_texts(spec, visual_prompt) if not (painted and len(t) == 1 and t.isalpha())]
    named = [t for t in printed if named_in(question, t)]
    return named or printed, bool(named)


def reading(text: str, spec: ImageSpec | None, question: str, visual_prompt: str = "", *, painted: bool = False) -> Reading:
    texts, named = wanted(spec, question, visual_prompt, painted=painted)
    seen = Text(text)
    return Reading(tuple(texts), tuple(t for t in texts if not seen.has(t)), named)


async def check(png: bytes, spec: ImageSpec | None, question: str, visual_prompt: str = "", *, painted: bool = False) -> Reading:
    """Reads the image (the OCR model runs as a process of its own, off the event loop)."""
    text = await asyncio.to_thread(reader.read, png)
    return reading(text, spec, question, visual_prompt, painted=painted)


def redrawn(spec: ImageSpec) -> ImageSpec | None:
    """The spec at REDRAW_SCALE times its size (text grows with the canvas); None at MAX_SIDE."""
    w, h = spec.width, spec.height
    k = min(REDRAW_SCALE, MAX_SIDE / w, MAX_SIDE / h)
    if k <= 1.0:
        return None
    return spec.model_copy(update={"width": round(w * k), "height": round(h * k)})


# --- the gate in a problem's flow -----------------------------------------------------------------


async def gate(
    res: Resources, job: Task, config: RunConfig, proposal: Proposal, repaint: Callable[[Proposal], Awaitable[Proposal]],
) -> tuple[Proposal, bool]:
    """The proposal as it goes on (perhaps drawn once more) and whether it is legible. `repaint`
    draws a proposal's image again by a painter model (graphs.problem passes the paint task)."""
    png = await _image(res, proposal)
    if png is None:
        return proposal, True  # unpainted: review drops it for that
    painted = _needs_painter(config, proposal.model_copy(update={"image": None}))
    first = await check(png, proposal.image_spec, proposal.question, proposal.visual_prompt, painted=painted)
    if first.legible:
        return proposal, True
    log.info("%s: illegible (%s unread); drawing it once more", proposal.key, ", ".join(first.missing)[:200])
    if painted:
        # The painter is asked again with the texts it got wrong named: a new prompt, so a new
        # drawing (the same prompt would be the call cache's answer, the same image).
        ask = f"{proposal.visual_prompt}\n{LETTERING}" + ", ".join(f"'{t}'" for t in first.missing)
        again = await repaint(proposal.model_copy(update={"image": None, "visual_prompt": ask[:4000]}))
    else:
        assert proposal.image_spec is not None  # drawn by the renderer, so it has a spec
        bigger = redrawn(proposal.image_spec)
        again = proposal if bigger is None else await _paint(res, proposal.model_copy(update={"image_spec": bigger, "image": None}))
    png = await _image(res, again) if again is not proposal else None
    if png is None:
        return proposal, False
    second = await check(png, again.image_spec, again.question, again.visual_prompt, painted=painted)
    if not second.legible:
        log.info("%s: still illegible (%s unread): dropped", proposal.key, ", ".join(second.missing)[:200])
    return again, second.legible
