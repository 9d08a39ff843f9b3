"""What Python's garbage collector costs a run, with the collector as Python sets it and as a run sets it.

Runs the built-in simulated panel in this process (8 lanes to --samples kept samples), once with
the collector as Python leaves it and once as `cads` sets it while lanes run
(`runner._collector_for_hours`: what start-up loaded frozen, the young generation collected every
10,000 allocations), in turn, --repeat times. For each it prints kept samples per second, this
process's CPU time per kept sample (every thread; the painter's worker processes are not counted),
the collector's share of it (timed by gc.callbacks) and how many full collections ran. A warm-up
run first loads every module, so neither arm pays for start-up. Figures of the simulator.

Usage: python bench/collector.py [--samples 3000] [--lanes 8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from cads_process import reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth import runner  # noqa: E402
from cadsynth.config import load_config  # noqa: E402
from cadsynth.graphs.settings import Settings, close_resources  # noqa: E402

TUNED = runner._collector_for_hours


class CollectorClock:
    """Seconds spent in collections and how many were full, from gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2


async def one_run(work: Path, lanes: int, samples: int) -> int:
    settings = Settings(db_url=f"sqlite:///{work / 'cads.db'}", data_dir=str(work / "data"))
    config = load_config(None).model_copy(update={"lanes": lanes, "target": samples, "rounds": 10_000})
    try:
        progress = await runner.execute(settings, "probe", config)
    finally:
        await close_resources()
    return progress.counts["kept"]


def measure(tuned: bool, lanes: int, samples: int) -> dict[str, float]:
    runner._collector_for_hours = TUNED if tuned else contextlib.nullcontext  # type: ignore[assignment]
    clock = CollectorClock()
    with tempfile.TemporaryDirectory() as work:
        gc.callbacks.append(clock)
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            kept = asyncio.run(one_run(Path(work), lanes, samples))
        finally:
            gc.callbacks.remove(clock)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"kept": kept, "wall": wall, "cpu_ms": 1000 * cpu / kept, "gc_share": clock.seconds / cpu, "full": clock.full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.samples < 100:
        raise SystemExit(f"error: --samples {args.samples} is too few to time; use 100 or more")
    print(f"simulated panel, built-in config, {args.lanes} lanes to {args.samples} kept samples, in this process "
          "(figures of the simulator, not of any model)")
    measure(True, 2, 50)  # warm-up: every module loaded before either arm
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for tuned in (False, True):
            r = measure(tuned, args.lanes, args.samples)
            results[tuned].append(r)
            print(
                f"  {'as cads sets it' if tuned else 'as Python sets it':18s} kept {r['kept']:.0f} in {r['wall']:6.1f} s: "
                f"{r['kept'] / r['wall']:5.1f} kept/s, {r['cpu_ms']:5.1f} ms CPU per kept, "
                f"collector {100 * r['gc_share']:4.1f}% of it, {r['full']:.0f} full collections"
            )
    rate = {tuned: sum(r["kept"] / r["wall"] for r in rs) / len(rs) for tuned, rs in results.items()}
    cpu = {tuned: sum(r["cpu_ms"] for r in rs) / len(rs) for tuned, rs in results.items()}
    print(f"as cads sets it / as Python sets it: kept/s {rate[True] / rate[False]:.2f}x, CPU per kept {cpu[True] / cpu[False]:.2f}x")


if __name__ == "__main__":
    main()
