"""Exports and the report at paper scale: `cads export` per format (the RL ones split) and `cads report` on one big simulated run.

Makes a run of --size kept samples on the simulated panel (`cads run --target N --lanes L`, about
15 minutes at 20,000 on 2 cores), or reuses the run `big` in --work when it is there and done. Then
for each format, and for the report, it times the whole command as a process and prints its wall
time, peak memory and what it wrote.

Usage: python bench/export_report.py [--size 20000] [--lanes 8] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from cads_process import cads, python

FORMATS = ("jsonl", "llava", "sharegpt", "parquet", "hf")
RL_FORMATS = ("verl", "easyr1", "trl")  # with --split: the pHash of every image and the near-twin groups too
SPLIT = "train=0.9,val=0.05,test=0.05"
RUN = "big"


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _timed(py: str, args: list[str], work: Path) -> tuple[float, float]:
    """Wall seconds and peak MiB of `cads ARGS` as its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen([py, "-m", "cadsynth.cli", *args], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"error: `cads {' '.join(args)}` failed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def _finished(py: str, work: Path) -> dict | None:
    """The stats of run `big` in `work` if it is there and done."""
    if not (work / "cads.db").exists():
        return None
    result = subprocess.run([py, "-m", "cadsynth.cli", "stats", RUN, "--json"], cwd=work, capture_output=True, text=True)
    found = json.loads(result.stdout) if result.returncode == 0 else None
    return found if found and found["status"] == "done" else None


def _ensure_run(py: str, work: Path, size: int, lanes: int) -> dict:
    if _finished(py, work) is None:
        print(f"making a run of {size} samples in {work} ({lanes} lanes); this takes a while")
        wall, _ = _timed(py, ["run", "--run-id", RUN, "--target", str(size), "--rounds", "1000", "--lanes", str(lanes)], work)
        print(f"  run: {wall:.0f} s")
    return json.loads(cads("stats", RUN, "--json", cwd=work, interpreter=py).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--work", type=Path, help="folder to make the run in, or that holds it (kept afterwards)")
    args = parser.parse_args()
    py = python()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        s = _ensure_run(py, work, args.size, args.lanes)
        print(f"run {RUN}: {s['kept']} kept of {s['proposals']} proposals, {len(s['rounds'])} rounds, "
              f"{len(s.get('lanes', []))} lanes (simulated panel)")
        out = Path(scratch) / "out"
        out.mkdir()
        for fmt in FORMATS:
            wall, peak = _timed(py, ["export", RUN, "--format", fmt, "--out", str(out / fmt)], work)
            print(f"  export {fmt:8s} {wall:6.1f} s  peak {peak:5.0f} MiB  wrote {_size(out / fmt) / 2**20:7.1f} MiB")
        for fmt in RL_FORMATS:
            wall, peak = _timed(py, ["export", RUN, "--format", fmt, "--split", SPLIT, "--out", str(out / fmt)], work)
            print(f"  export {fmt:8s} {wall:6.1f} s  peak {peak:5.0f} MiB  wrote {_size(out / fmt) / 2**20:7.1f} MiB  (--split {SPLIT})")
        wall, peak = _timed(py, ["report", RUN, "--out", str(out / "report.html")], work)
        print(f"  report          {wall:6.1f} s  peak {peak:5.0f} MiB  wrote {_size(out / 'report.html') / 2**20:7.1f} MiB "
              f"({s['proposals']} samples in the gallery)")


if __name__ == "__main__":
    main()
