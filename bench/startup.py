"""How long `cads` takes to start: `cads --help` and `cads runs` as whole processes.

Beside them, for scale: a bare interpreter, and an interpreter that imports the debate stack
(LangGraph and the model clients), which every command paid before those imports moved into the
commands that use them. Usage: python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time

from cads_process import cads, python


def timed(cmd: list[str], cwd: str, runs: int) -> list[float]:
    subprocess.run(cmd, cwd=cwd, capture_output=True, check=True)  # warm the file cache
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = python()
    with tempfile.TemporaryDirectory() as work:
        cads("run", "--rounds", "1", cwd=work, interpreter=py)  # `runs` reads a real database
        rows = {
            "cads --help": [py, "-m", "cadsynth.cli", "--help"],
            "cads runs": [py, "-m", "cadsynth.cli", "runs"],
            "python (nothing imported)": [py, "-c", "pass"],
            "python importing the debate stack": [py, "-c", "import cadsynth.runner, cadsynth.agents.models"],
        }
        print(f"start-up, {args.runs} runs each (wall seconds: median, min, max)")
        for name, cmd in rows.items():
            walls = timed(cmd, work, args.runs)
            print(f"  {name:36s} {statistics.median(walls):.3f}  {min(walls):.3f}  {max(walls):.3f}")


if __name__ == "__main__":
    main()
