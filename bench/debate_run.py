"""How long the default job takes: `cads run` on the built-in simulated panel, as a user runs it.

Prints wall time, model calls per second and the peak memory of the process for a few runs, each
on a fresh SQLite database. Usage: python bench/debate_run.py [--runs 3] [-- extra cads run args]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from cads_process import cads, python


def one_run(extra: list[str], interpreter: str) -> tuple[float, int, int, float]:
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        cads("run", "--run-id", "bench", *extra, cwd=work, interpreter=interpreter)
        wall = time.perf_counter() - start
        stats = json.loads(cads("stats", "bench", "--json", cwd=work, interpreter=interpreter).stdout)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return wall, stats["model_calls"], stats["kept"], peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    interpreter = python()
    rows = [one_run(extra, interpreter) for _ in range(args.runs)]
    walls = [r[0] for r in rows]
    print(f"cads run {' '.join(extra) or '(defaults)'}: {args.runs} runs with {Path(interpreter)}")
    for i, (wall, calls, kept, peak) in enumerate(rows):
        print(f"  run {i}: {wall:6.2f} s wall, {calls} model calls ({calls / wall:5.1f}/s), {kept} kept, peak RSS <= {peak:.0f} MiB")
    print(f"median wall {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f})")


if __name__ == "__main__":
    main()
