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
# Ink this long in a straight horizontal or vertical run is a rule, not a letter (at 640x480, a
# capital is ~13 px tall).
RULE = 40


class ReaderMissing(RuntimeError):
    """Tesseract is not installed here."""


def available() -> bool:
    return shutil.which("tesseract") is not None


def _without_rules(dark: np.ndarray) -> np.ndarray:
    """Black text on white, with long straight runs of ink (axes, figure edges, underlining
    radii) whited out: a letter's strokes are short, and a rule that touches a word makes the
    reader take both for a graphic."""
    keep = dark.copy()
    for axis in (0, 1):
        run = np.cumsum(np.pad(dark, [(1, 0) if a == axis else (0, 0) for a in (0, 1)]).astype(np.int32), axis=axis)
        n = dark.shape[axis]
        if n <= RULE:
            continue
        head = np.take(run, range(RULE, n + 1), axis=axis) - np.take(run, range(0, n + 1 - RULE), axis=axis)
        full = (head == RULE).astype(np.int32)  # a window of RULE pixels, all ink, starts here
        covered = np.cumsum(np.pad(full, [(0, RULE - 1) if a == axis else (0, 0) for a in (0, 1)]), axis=axis)
        covered = covered - np.pad(np.take(covered, range(0, n - RULE), axis=axis), [(RULE, 0) if a == axis else (0, 0) for a in (0, 1)])
        keep &= covered == 0
    return np.where(keep, 0, 255).astype(np.uint8)


def read(png: bytes) -> str:
    """All the text the model finds in the image: read as it is, then read again with only its
    dark ink kept (coloured fills, pale boxes and grid lines whited out, which otherwise merge
    with the letters they touch). Both readings, one after the other."""
    import pytesseract
    from PIL import Image, ImageChops

    if not available():
        raise ReaderMissing("tesseract is not installed; apt-get install tesseract-ocr tesseract-ocr-eng, or turn gates.legibility off")
    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
    r, g, b = rgb.split()
    brightest = ImageChops.lighter(ImageChops.lighter(r, g), b)
    ink = Image.fromarray(_without_rules(np.asarray(brightest) < INK))
    texts = []
    for page in (rgb.convert("L"), ink):
        if SCALE != 1:
            page = page.resize((page.width * SCALE, page.height * SCALE), Image.Resampling.LANCZOS)
        texts.append(str(pytesseract.image_to_string(page, lang="eng", config=CONFIG)))
    return "\n".join(texts)
