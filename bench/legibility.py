"""Legibility measured by a REAL OCR model (Tesseract, offline on the CPU), not by the simulator.

The problems are the simulated world's (specs and questions with computed truths); every figure
about reading them is Tesseract's. Prints:

1. per kind in the ImageSpec union (each kind the world has templates for): over N rendered
   images at the default size, the share of the texts the spec prints that the reader reads back
   (target >= 97% per declarative kind), the share of lone letters among them (shape and vertex
   names: the hardest for Tesseract), the share of images the gate passes, and OCR time per
   image (median; up to three readings per image, see agents.reader);
2. on painter-model images from the fake image model (cadsynth.fakes, over HTTP) that letters its
   prompt and garbles every label of a share of prompts (--garble, default 20%): the share of
   garbled images the gate catches (target >= 90%) and of clean ones it would drop (<= 3%). Both
   at the gate's first look (a failed image is drawn once more before it is dropped, so the clean
   ones dropped in a run are at most this). Images whose question and spec give the reader no
   text to look for (unlabelled shapes) are counted apart: the gate passes them.

Usage: python bench/legibility.py [--n 1000] [--painter-n N] [--garble 0.2] [--threads 2] [--only renderers|painter]
       [--kinds molecule,circuit,...]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cadsynth.agents import reader
from cadsynth.agents.painter.render import render
from cadsynth.agents.sim.world import TEMPLATES, Problem, World
from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.images import garbled
from cadsynth.fakes.panelist import Panelist
from cadsynth.graphs.legibility import Text, printed_texts, reading, wanted
from cadsynth.specs import KINDS

KEY = "sk-cads-legibility-bench"


def _problems(kind: str | None, n: int, salt: int) -> list[Problem]:
    world = World()
    ids = [t.id for t in TEMPLATES.values() if kind is None or t.kind == kind]
    out = []
    for i in range(n):
        rng = random.Random(salt * 1_000_003 + i)
        out.append(world.generate(rng, rng.choice(ids), rng.random()))
    return out


def _timed_read(png: bytes) -> tuple[str, float]:
    start = time.perf_counter()
    text = reader.read(png)
    return text, time.perf_counter() - start


def declarative(n: int, threads: int, only: set[str] | None = None) -> None:
    have = {t.kind for t in TEMPLATES.values()}
    print(f"renderer images, {n} per kind at the default size (real OCR: Tesseract {_version()})")
    print(f"  {'kind':12} {'texts read':>11} {'letters read':>13} {'gate passes':>12} {'OCR s/image':>12}")
    for salt, kind in enumerate(sorted(KINDS)):
        if only and kind not in only:
            continue
        if kind not in have:
            print(f"  {kind:12} (no world template yet: not measured)")
            continue
        problems = _problems(kind, n, salt)
        pngs = [render(p.spec) for p in problems]
        with ThreadPoolExecutor(threads) as pool:
            reads = list(pool.map(_timed_read, pngs))
        texts = read = letters = letters_read = passed = 0
        for p, (text, _) in zip(problems, reads):
            seen = Text(text)
            printed = printed_texts(p.spec)
            lone = [t for t in printed if len(t) == 1 and t.isalpha()]
            texts += len(printed)
            read += sum(seen.has(t) for t in printed)
            letters += len(lone)
            letters_read += sum(seen.has(t) for t in lone)
            passed += reading(text, p.spec, p.question).legible
        share = f"{read / texts:.1%}" if texts else "n/a"
        lone_share = f"{letters_read / letters:.1%}" if letters else "n/a"
        ocr = statistics.median(t for _, t in reads)
        print(f"  {kind:12} {share:>11} {lone_share:>13} {passed / n:>12.1%} {ocr:>12.2f}")


def _paint(url: str, prompt: str) -> bytes:
    body = json.dumps({"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024"}).encode()
    request = urllib.request.Request(
        f"{url}/images/generations", body, {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return base64.b64decode(json.load(answer)["data"][0]["b64_json"])


def painter(n: int, share: float, threads: int) -> None:
    problems = _problems(None, n, 99)
    with FakeOpenAI(Panelist(), api_key=KEY) as server:
        server.lettering, server.garble_labels = True, share
        pngs = [_paint(server.base_url, p.visual_prompt) for p in problems]
    with ThreadPoolExecutor(threads) as pool:
        reads = list(pool.map(_timed_read, pngs))
    counts: dict[str, int] = defaultdict(int)
    for p, (text, _) in zip(problems, reads):
        bad = garbled(p.visual_prompt, share)
        if not wanted(p.spec, p.question, painted=True)[0]:
            counts["garbled, nothing to read" if bad else "clean, nothing to read"] += 1
            continue
        legible = reading(text, p.spec, p.question, painted=True).legible
        counts["garbled" if bad else "clean"] += 1
        counts["caught" if bad and not legible else "dropped clean" if not bad and not legible else "ok"] += 1
    garbled_n, clean_n = counts["garbled"], counts["clean"]
    print(f"painter images: {n} from the fake image model, {share:.0%} of prompts garbled (real OCR)")
    print(f"  garbled images caught: {counts['caught']}/{garbled_n} = {counts['caught'] / max(1, garbled_n):.1%} (target >= 90%)")
    print(f"  clean images it would drop: {counts['dropped clean']}/{clean_n} = {counts['dropped clean'] / max(1, clean_n):.1%} (target <= 3%)")
    print(f"  with no text to look for (passed unread): {counts['garbled, nothing to read']} garbled, {counts['clean, nothing to read']} clean")
    print(f"  OCR time per image: median {statistics.median(t for _, t in reads):.2f} s (1024x1024)")


def _version() -> str:
    import pytesseract

    return str(pytesseract.get_tesseract_version())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="rendered images per kind")
    parser.add_argument("--painter-n", type=int, default=None, help="painter-model images (default: --n)")
    parser.add_argument("--garble", type=float, default=0.2, help="share of prompts whose labels the fake painter garbles")
    parser.add_argument("--threads", type=int, default=2, help="OCR processes at once")
    parser.add_argument("--only", choices=["renderers", "painter"], help="measure one part only")
    parser.add_argument("--kinds", default="", help="comma-separated image kinds to measure (default: every kind)")
    args: Any = parser.parse_args()
    if not reader.available():
        raise SystemExit("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
    if args.only != "painter":
        declarative(args.n, args.threads, {k.strip() for k in args.kinds.split(",") if k.strip()} or None)
    if args.only != "renderers":
        painter(args.painter_n or args.n, args.garble, args.threads)


if __name__ == "__main__":
    main()
