"""The painter under untrusted input: render time per kind, and the hostile corpus.

Prints (1) render time per kind, ms per image (median, p90), over specs the simulated world writes
for each kind in the ImageSpec union, drawn in this process after one warm-up per kind; the target
is that no new kind (vega_lite, svg) is slower than 5x the slowest of the six original kinds at the
median. (2) The hostile corpus (cadsynth.fakes.hostile): each case as a model's answer
(parse_spec) and, unvalidated, in the painter's worker processes; every case must be refused. It
prints the slowest refusal, what a local HTTP server and the canary files saw (nothing, or the
renderer fell for a case), and the workers' peak resident memory against their cap.

Usage: python bench/hostile.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from cadsynth.agents.painter import workers
from cadsynth.agents.painter.render import render
from cadsynth.agents.sim.world import TEMPLATES, World
from cadsynth.fakes.hostile import CASES, Trap
from cadsynth.specs import KINDS, SpecError, SvgImage, VegaLiteChart, parse_spec

ORIGINAL = ("bar_chart", "line_chart", "pie_chart", "table", "geometry", "shape_scene")
NEW = ("vega_lite", "svg")


def render_times(n: int) -> dict[str, list[float]]:
    world = World()
    by_kind: dict[str, list[str]] = defaultdict(list)
    for t in TEMPLATES.values():
        by_kind[t.kind].append(t.id)
    out: dict[str, list[float]] = {}
    for kind in sorted(KINDS):
        if kind not in by_kind:
            print(f"  {kind:12} (no world template: not timed)")
            continue
        rng = random.Random(7)
        specs = [world.generate(rng, rng.choice(by_kind[kind]), rng.random()).spec for _ in range(n)]
        render(specs[0])  # warm-up: fonts, and vl-convert's JavaScript engine
        times = []
        for spec in specs:
            start = time.perf_counter()
            render(spec)
            times.append((time.perf_counter() - start) * 1000)
        out[kind] = times
    return out


async def hostile() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cads-hostile-"))
    trap = Trap(folder)
    here = Path.cwd()
    import os

    os.chdir(folder)  # workers start here: a relative reference would resolve to the canaries
    known = KINDS
    good = parse_spec({"kind": "svg", "svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"><rect width="5" height="5" fill="red"/></svg>'})
    await workers.render_async(good)
    refused_spec = refused_worker = ran = skipped = 0
    slowest = (0.0, "")
    served = True
    for case in CASES:
        if case.kind not in known:
            skipped += 1
            continue
        ran += 1
        data = case.build(trap)
        start = time.perf_counter()
        try:
            parse_spec(data)
        except SpecError:
            refused_spec += 1
        took = time.perf_counter() - start
        slowest = max(slowest, (took, f"{case.name} (validation)"))
        cls = {"svg": SvgImage, "vega_lite": VegaLiteChart}.get(case.kind)
        if cls is None:
            continue
        spec = cls.model_construct(**{k: v for k, v in data.items() if k != "kind"})
        start = time.perf_counter()
        try:
            await workers.render_async(spec)
        except ValueError:
            refused_worker += 1
        took = time.perf_counter() - start
        slowest = max(slowest, (took, f"{case.name} (worker)"))
        served = served and len(await workers.render_async(good)) > 0
    unvalidated = sum(1 for c in CASES if c.kind in known and c.kind in NEW)
    peaks = [_peak(pid) for pid in workers.worker_pids()]
    os.chdir(here)
    print(f"  cases run: {ran} ({skipped} skipped: their kind is not in this build)")
    print(f"  refused as a model's answer (SpecError): {refused_spec}/{ran}")
    print(f"  refused by the painter's workers, unvalidated: {refused_worker}/{unvalidated}")
    print(f"  slowest refusal: {slowest[0] * 1000:.1f} ms, {slowest[1]} (limits: {workers.RENDER_CPU_SECONDS} s of CPU, {workers.RENDER_SECONDS:g} s of wall time)")
    print(f"  fetches seen by the local HTTP server: {len(trap.fetches)}; canary files read: {len(trap.canaries_read())}")
    print(f"  painter served the next image after every case: {served}")
    print(f"  worker peak resident memory: {max(peaks, default=0) / 2**20:.0f} MB (cap on data: {workers.WORKER_MEMORY >> 20} MB)")
    trap.close()


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="specs timed per kind")
    args = parser.parse_args()
    print(f"render time per kind, ms per image ({args.n} specs each, in-process)")
    times = render_times(args.n)
    medians = {k: statistics.median(v) for k, v in times.items()}
    for kind, t in times.items():
        p90 = sorted(t)[int(0.9 * len(t))]
        tag = "new" if kind in NEW else ("" if kind in ORIGINAL else "added")
        print(f"  {kind:12} median {medians[kind]:7.1f}  p90 {p90:7.1f}  {tag}")
    slowest = max(medians[k] for k in ORIGINAL if k in medians)
    for kind in NEW:
        if kind in medians:
            ratio = medians[kind] / slowest
            print(f"  {kind}: {ratio:.2f}x the slowest original kind's median (target <= 5x): {'met' if ratio <= 5 else 'MISSED'}")
    print("hostile corpus")
    asyncio.run(hostile())


if __name__ == "__main__":
    main()
