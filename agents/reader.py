"""The reader: a real OCR model that reads an image's text back, offline, on the CPU.

Tesseract (Debian's tesseract-ocr with its English data, an LSTM recognizer), driven through
pytesseract. Nothing is downloaded at run time: the model is the Debian package's data file. The
legibility gate (graphs.legibility) asks it what an image says.
"""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
from PIL import Image

# One thread per recognition: the painter's workers and the event loop share a few cores, and
# OpenMP's default (every core, spinning) makes many small images slower, not faster.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

# Tesseract reads text of cap height ~20-30 px best; charts print 10-16 px text, so the image is
# read at twice its size. Page mode 11 (sparse text) finds labels scattered over a chart, where the
# default page layout analysis looks for paragraphs and drops isolated words.
SCALE = 2
CONFIG = "--psm 11 --oem 1"
# A pixel is ink when none of its channels is brighter than this: black and dark grey text, not
# a saturated colour (whose brightest channel is high) nor a pale fill.
INK = 110
# A connected shape of ink taller or wider than this (or a twelfth of the image's shorter side) is
# a graphic, not a letter: at 640x480 a capital is ~13 px tall.
GLYPH = 40


class ReaderMissing(RuntimeError):
    """Tesseract is not installed here."""


def available() -> bool:
    return shutil.which("tesseract") is not None


def _letters_only(dark: np.ndarray) -> np.ndarray:
    """Black text on white: the dark ink with every connected shape larger than a letter whited
    out (axes, figure outlines, a circle around its radius's label, underlining rules). The reader
    takes a word inside or touching a large graphic for part of the graphic."""
    from scipy import ndimage  # type: ignore[import-untyped]

    labels, _ = ndimage.label(dark, structure=np.ones((3, 3), dtype=bool))
    big = max(GLYPH, min(dark.shape) // 12)
    keep = np.zeros(labels.max() + 1, dtype=bool)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and box[0].stop - box[0].start <= big and box[1].stop - box[1].start <= big:
            keep[i] = True
    keep[0] = False
    return np.where(keep[labels], 0, 255).astype(np.uint8)


def _lone_glyphs(letters: np.ndarray, grey: np.ndarray) -> Image.Image | None:
    """The letters that stand alone (a shape's or a vertex's name), cut out of the grey image with
    their antialiased edges and set one a line: Tesseract drops a lone glyph on a page as noise,
    but reads a column of them (and an "f" cut as bare ink, it reads as "t")."""
    from scipy import ndimage  # type: ignore[import-untyped]

    boxes = [b for b in ndimage.find_objects(ndimage.label(letters, structure=np.ones((3, 3), dtype=bool))[0]) if b]
    alone = []
    for i, (ys, xs) in enumerate(boxes):
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if h < 6:
            continue  # a dot, a stroke of punctuation
        m = max(h, w)
        near = (  # another glyph this close (a dot, like a circle's centre mark, does not count)
            j != i and max(b.stop - b.start, a.stop - a.start) > 0.5 * h
            and b.start < ys.stop + 0.6 * m and b.stop > ys.start - 0.6 * m and a.start < xs.stop + 0.9 * m and a.stop > xs.start - 0.9 * m
            for j, (b, a) in enumerate(boxes)
        )
        if not any(near):
            alone.append((ys, xs))
    if not alone:
        return None
    line = max(max(ys.stop - ys.start, xs.stop - xs.start) for ys, xs in alone) + 8
    # One letter a line: set side by side, however far apart, Tesseract joins them into words.
    strip = Image.new("L", (3 * line, len(alone) * line + line), 255)
    for k, (ys, xs) in enumerate(alone):
        ys, xs = slice(max(0, ys.start - 1), ys.stop + 1), slice(max(0, xs.start - 1), xs.stop + 1)
        strip.paste(Image.fromarray(grey[ys, xs]), (line, line // 2 + k * line + (line - (ys.stop - ys.start)) // 2))
    return strip


def read(png: bytes) -> str:
    """All the text the model finds in the image: read as it is, then read again as letters alone
    (dark ink only, every shape larger than a letter whited out: fills, boxes, grid lines, axes
    and outlines, which otherwise merge with the words they touch), then its lone letters set in
    one line. The readings, in turn."""
    import pytesseract  # type: ignore[import-untyped]
    from PIL import ImageChops

    if not available():
        raise ReaderMissing("tesseract is not installed; apt-get install tesseract-ocr tesseract-ocr-eng, or turn gates.legibility off")
    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
    r, g, b = rgb.split()
    brightest = ImageChops.lighter(ImageChops.lighter(r, g), b)
    letters = _letters_only(np.asarray(brightest) < INK)
    texts = []
    for page in (rgb.convert("L"), Image.fromarray(letters)):
        if SCALE != 1:
            page = page.resize((page.width * SCALE, page.height * SCALE), Image.Resampling.LANCZOS)
        texts.append(str(pytesseract.image_to_string(page, lang="eng", config=CONFIG)))
    alone = _lone_glyphs(letters == 0, np.asarray(brightest))
    if alone is not None:  # read as a block of lines (page mode 6)
        alone = alone.resize((alone.width * 3, alone.height * 3), Image.Resampling.LANCZOS)
        texts.append(str(pytesseract.image_to_string(alone, lang="eng", config="--psm 6 --oem 1")))
    return "\n".join(texts)
