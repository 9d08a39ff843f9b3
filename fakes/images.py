"""Images for the fake provider servers: a tiny PNG encoder, and the checks on images sent to them.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. They draw with :func:`make_png`
(standard library only) and refuse an image that is not what its MIME type says
(:func:`check_image`), as the real services do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import struct
import zlib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAGIC = {
    "image/png": (PNG_MAGIC,),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(
    width: int = 8,
    height: int = 8,
    seed: str | bytes = "",
    *,
    text: str | None = None,
) -> bytes:
    """A valid RGB PNG (standard library only) whose pixels depend on ``seed``:
    horizontal bands of two colours taken from sha256(seed).  ``text`` is
    stored in a ``tEXt`` chunk under the key ``prompt``."""
    if width < 1 or height < 1:
        raise ValueError("width and height must be positive")
    h = hashlib.sha256(seed.encode() if isinstance(seed, str) else seed).digest()
    c1, c2 = h[0:3], h[3:6]
    band = max(1, h[6] % 16 + 1)
    row1 = b"\x00" + c1 * width
    row2 = b"\x00" + c2 * width
    raw = b"".join(row1 if (y // band) % 2 == 0 else row2 for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [PNG_MAGIC, _png_chunk(b"IHDR", ihdr)]
    if text is not None:
        parts.append(_png_chunk(b"tEXt", b"prompt\x00" + text[:500].encode("latin-1", "replace")))
    parts += [_png_chunk(b"IDAT", zlib.compress(raw, 6)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


def garbled(prompt: str, share: float) -> bool:
    """Whether the lettering painter garbles this prompt's labels: a share of prompts, fixed by
    the prompt's hash (so a benchmark knows which images it garbled)."""
    return int.from_bytes(hashlib.sha256(b"garble" + prompt.encode()).digest()[:8], "big") / 2**64 < share


def _garble(text: str) -> str:
    """Every label-like token drawn wrong, as image models draw text: names (capitalised words and
    quoted texts) with their letters shifted, numbers with their digits changed."""

    def word(m: re.Match[str]) -> str:
        w = m.group()
        if w.isdigit() or re.fullmatch(r"\d+(\.\d+)?", w):
            return "".join(str((int(c) + 3) % 10) if c.isdigit() else c for c in w)
        base = ord("A") if w[0].isupper() else ord("a")
        return chr((ord(w[0]) - base + 7) % 26 + base) + "".join(
            chr((ord(c) - ord("a") + 11) % 26 + ord("a")) if c.islower() else c for c in w[1:]
        )

    quoted = re.sub(r"'([^']*)'", lambda m: "'" + re.sub(r"[A-Za-z]+|\d+", word, m.group(1)) + "'", text)
    return re.sub(r"\b(?:[A-Z][a-z]+|\d+(?:\.\d+)?)\b", word, quoted)


def make_lettered_png(width: int, height: int, prompt: str, *, garble: bool = False) -> bytes:
    """A white image with the prompt written on it, wrapped to the width: a painter that draws
    every label and value it was asked for (or, garbled, draws them wrong)."""
    from PIL import Image, ImageDraw, ImageFont

    text = _garble(prompt) if garble else prompt
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    size = max(12, min(26, width // 36))
    font = ImageFont.load_default(size=size)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for w in paragraph.split():
            if line and draw.textlength(f"{line} {w}", font=font) > width - 2 * size:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
    for i, line in enumerate(lines):
        y = size + i * round(size * 1.4)
        if y > height - size:
            break
        draw.text((size, y), line, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def check_image(data: bytes, mime: str) -> str | None:
    """None if ``data`` really is an image of type ``mime``, else the reason."""
    magics = _MAGIC.get(mime)
    if magics is None:
        return f"unsupported image mime type {mime!r}"
    if not any(data.startswith(m) for m in magics):
        return f"image data does not start with the {mime} signature"
    if mime == "image/webp" and data[8:12] != b"WEBP":
        return "image data is not a WEBP file"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "invalid"
        return f"image could not be decoded: {exc}"
    if fmt != _PIL_FORMATS[mime]:
        return f"image is {fmt}, not {mime}"
    return None


def b64decode_any(s: str) -> bytes:
    """Strict decode of standard or URL-safe base64 (padding optional)."""
    s = s.strip()
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)
