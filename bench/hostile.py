"""The painter under hostile input: the corpus of cadsynth.fakes.hostile, every case refused.

Each case is given as a model's answer (parse_spec; for a declarative kind, what its schema lets
through goes on to its renderer) and, for the untrusted document kinds, again unvalidated to the
painter's worker processes; every case must be refused. Prints the slowest refusal, what a local
HTTP server and the canary files saw (nothing, or a renderer fell for a case), and the workers'
peak resident memory against their cap. Render time per kind: bench/renderers.py.

Usage: python bench/hostile.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from cads_process import memory_mib

from cadsynth.agents.painter import workers
from cadsynth.agents.painter.render import render
from cadsynth.fakes.hostile import CASES, Trap
from cadsynth.specs import SpecError, SvgImage, VegaLiteChart, parse_spec

UNTRUSTED = {"svg": SvgImage, "vega_lite": VegaLiteChart}


async def hostile() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cads-hostile-"))
    trap = Trap(folder)
    here = Path.cwd()
    import os

    os.chdir(folder)  # workers start here: a relative reference would resolve to the canaries
    good = parse_spec({"kind": "svg", "svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"><rect width="5" height="5" fill="red"/></svg>'})
    await workers.render_async(good)
    refused_spec = refused_worker = 0
    slowest = (0.0, "")
    served = True
    for case in CASES:
        data = case.build(trap)
        start = time.perf_counter()
        try:
            spec = parse_spec(data)
            if case.kind not in UNTRUSTED:
                render(spec)  # a SMILES or an expression the schema lets through: its renderer refuses it
        except SpecError:
            refused_spec += 1
        took = time.perf_counter() - start
        slowest = max(slowest, (took, f"{case.name} (validation)"))
        cls = UNTRUSTED.get(case.kind)
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
    unvalidated = sum(1 for c in CASES if c.kind in UNTRUSTED)
    peaks = [memory_mib("VmHWM", pid) for pid in workers.worker_pids()]
    os.chdir(here)
    print(f"hostile corpus: {len(CASES)} cases")
    print(f"  refused as a model's answer (SpecError, by validation or the kind's renderer): {refused_spec}/{len(CASES)}")
    print(f"  refused by the painter's workers, unvalidated: {refused_worker}/{unvalidated}")
    print(f"  slowest refusal: {slowest[0] * 1000:.1f} ms, {slowest[1]} (limits: {workers.RENDER_CPU_SECONDS} s of CPU, {workers.RENDER_SECONDS:g} s of wall time)")
    print(f"  fetches seen by the local HTTP server: {len(trap.fetches)}; canary files read: {len(trap.canaries_read())}")
    print(f"  painter served the next image after every case: {served}")
    print(f"  worker peak resident memory: {max(peaks, default=0):.0f} MB (cap on data: {workers.WORKER_MEMORY >> 20} MB)")
    trap.close()


def main() -> None:
    asyncio.run(hostile())


if __name__ == "__main__":
    main()
