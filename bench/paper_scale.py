"""Paper scale on the simulated panel: one `cads run` to the largest size, read as it passes each size.

One run per setting goes to the largest of --sizes; a sampler reads the store every second and notes
the moment the run passes each size, so the figures at 2,000 and 20,000 are those of the same run on
its way to 100,000 (a run stopped at 2,000 would have made the same samples in the same time, less
the last round's tail). For each size it prints (figures of the simulated panel, which answers at once):
  * wall time and kept samples per second from the start, as a run of that size would report;
  * kept/s and CPU seconds per kept sample (the run process and its painter workers) over the second
    half of the way to that size: what a sample costs at that point of the run; with the share of
    problems kept over it, and the painter workers' CPU per problem, a control: drawing a problem's
    image does not depend on how big the run is, so that figure moves with the machine's speed;
  * peak memory of the run process so far (its high-water mark), and its ratio to the smallest size's
    (the painter workers' is printed apart: they hold one image at a time, and the Vega-Lite
    renderer's engine, whatever the run's size);
and at the end, for the whole run:
  * the painter alone: a sample of the run's images rendered again one after another in one process,
    the physical limit of this pipeline, and the run's wall time as a multiple of it;
  * the store on disk per kept sample, and the checkpoint tables' share of it.

With --clean the run is the clean world with the quality gates off (no failure modes, no blind
pass, no rechecks): the pipeline's own cost per sample, as before the gates existed.

--settings runs under each named setting: `built-in` (the config as shipped) and `weighted-dedup`
(`consensus: {weighted: true}` and the near-duplicate gate on, the costliest per round). At the end
it prints kept samples per second at each size as a ratio to the smallest size's, per setting, side
by side: a flat cost per sample reads 1.00 all along. Linux only (it reads /proc).

Usage: python bench/paper_scale.py [--sizes 2000 20000 100000] [--lanes 8] [--clean] [--settings built-in weighted-dedup]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import yaml

from cads_process import cads, memory_mib, python, reexec_with_cadsynth

reexec_with_cadsynth()
sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each size's line as the run passes it
from cadsynth.config import WorldConfig  # noqa: E402
from cadsynth.graphs.dedup import KEPT  # noqa: E402

RENDER_AGAIN = """
import sqlite3, sys, time, json
from cadsynth.agents.painter.render import render
from cadsynth.specs import parse_spec
db = sqlite3.connect(sys.argv[1])
records = [r for (r,) in db.execute("SELECT record FROM cads_proposals")]
specs = [json.loads(r)["image_spec"] for r in records if json.loads(r).get("image_spec")]
sample = specs[:: max(1, len(specs) // int(sys.argv[2]))]
start = time.perf_counter()
for spec in sample:
    render(parse_spec(spec))
print(len(specs), len(sample), time.perf_counter() - start)
"""
PAINTER_SAMPLE = 3000  # images rendered again to time the painter alone


def tree(pid: int) -> list[int]:
    """A process and its living descendants, from /proc."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU of one process, 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Point(NamedTuple):
    kept: int
    wall: float
    run_cpu: float  # the run process's
    painter_cpu: float  # its painter workers' (a worker that died keeps its last reading)
    peak_mib: float  # the run process's high-water mark so far
    problems: int | None  # proposed so far; counted only at a window's edges (each count scans the table)


class Sampler(threading.Thread):
    """Every second: kept samples so far (from the store), wall time, the run's CPU and memory.
    Prints each size's figures as the run passes it, so a run stopped early has said what it saw."""

    def __init__(self, pid: int, db: Path, start: float, sizes: list[int]) -> None:
        super().__init__(daemon=True)
        self.pid, self.db, self.start_time, self.sizes = pid, db, start, sizes
        self.points: list[Point] = []
        self.edges = sorted({edge for size in sizes for edge in (size / 2, size)})  # windows' edges not reached yet
        self.marks: list[dict[str, float]] = []
        self.worker_peak_mib = 0.0  # the largest painter worker's, over the run
        self._cpu: dict[int, float] = {}  # each process's CPU when last read: a worker started again keeps its predecessor's
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.poll()

    def poll(self) -> None:
        """One reading; the last is taken once the run has ended (its peak memory is then the last seen)."""
        query = f"SELECT count(*) FROM cads_consensus WHERE outcome IN ({', '.join('?' * len(KEPT))})"
        problems = None
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                kept = conn.execute(query, KEPT).fetchone()[0]
                if self.edges and kept >= self.edges[0]:
                    self.edges = [edge for edge in self.edges if edge > kept]
                    problems = conn.execute("SELECT count(*) FROM cads_proposals").fetchone()[0]
        except sqlite3.OperationalError:
            return  # the store is not made yet
        processes = tree(self.pid)
        self._cpu.update({p: cpu for p in processes if (cpu := cpu_seconds(p))})
        peak = max(memory_mib("VmHWM", self.pid), self.points[-1].peak_mib if self.points else 0.0)
        painter = sum(cpu for p, cpu in self._cpu.items() if p != self.pid)
        wall = time.perf_counter() - self.start_time
        self.points.append(Point(kept, wall, self._cpu.get(self.pid, 0.0), painter, peak, problems))
        self.worker_peak_mib = max([self.worker_peak_mib, *(memory_mib("VmHWM", p) for p in processes[1:])])
        while len(self.marks) < len(self.sizes) and kept >= self.sizes[len(self.marks)]:
            self._mark(self.sizes[len(self.marks)])

    def _mark(self, size: int) -> None:
        half = next(p for p in self.points if p.kept >= size / 2)
        end = self.points[-1]
        kept, problems = end.kept - half.kept, (end.problems or 0) - (half.problems or 0)
        self.marks.append(m := {
            "size": size, "kept": end.kept, "wall": end.wall, "peak_mib": end.peak_mib,
            "window_rate": kept / max(end.wall - half.wall, 1e-9),
            "window_cpu_ms": 1000 * (end.run_cpu + end.painter_cpu - half.run_cpu - half.painter_cpu) / max(kept, 1),
            "window_kept_share": kept / max(problems, 1),
            "window_painting_ms": 1000 * (end.painter_cpu - half.painter_cpu) / max(problems, 1),
        })
        first = self.marks[0]
        print(
            f"  at {size:6d}: {m['wall']:7.1f} s, {m['kept'] / m['wall']:5.1f} kept/s from the start; "
            f"{m['window_rate']:5.1f} kept/s and {m['window_cpu_ms']:5.1f} ms CPU per kept over {size // 2}-{size} "
            f"(kept {m['window_kept_share']:.2f} of the problems; painting {m['window_painting_ms']:4.1f} ms a problem); "
            f"peak {m['peak_mib']:.0f} MiB ({m['peak_mib'] / first['peak_mib']:.2f}x at {first['size']})",
        )


SETTINGS = ("built-in", "weighted-dedup")


def run_once(py: str, sizes: list[int], lanes: int, work: Path, clean: bool, setting: str = "built-in") -> dict:
    target = max(sizes)
    # The run's own id, as a user's run gets it: the id is in every record row, so its length shows in the store.
    cmd = [py, "-m", "cadsynth.cli", "run", "--target", str(target), "--rounds", "10000", "--lanes", str(lanes)]
    if clean or setting != "built-in":
        config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
        if clean:
            config.update(gates={}, world=WorldConfig.clean().model_dump(mode="json"))
        if setting == "weighted-dedup":
            config["consensus"] = {**config.get("consensus", {}), "weighted": True}
            config["gates"] = {**config.get("gates", {}), "near_duplicates": {"enabled": True}}
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        cmd.insert(4, "config.yaml")
    db = work / "cads.db"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = Sampler(proc.pid, db, start, sizes)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    sampler.poll()
    if status != 0:
        raise SystemExit(f"error: `cads run` exited {status}: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    if len(sampler.marks) < len(sizes):
        raise SystemExit(f"error: the run never passed {sizes[len(sampler.marks)]} kept samples by the sampler's reading; lower --sizes")
    with sqlite3.connect(db) as conn:
        [run] = [r for (r,) in conn.execute("SELECT id FROM cads_runs WHERE lane_of IS NULL")]
        checkpoint_bytes = sum(
            conn.execute(f"SELECT coalesce(sum({size}), 0) FROM {table}").fetchone()[0]
            for table, size in (
                ("cads_checkpoints", "length(checkpoint) + length(metadata) + length(channel_versions) + length(metadata_json)"),
                ("cads_checkpoint_blobs", "length(blob)"),
                ("cads_checkpoint_writes", "length(blob)"),
            )
        )
    kept = int(json.loads(cads("stats", run, "--json", cwd=work, interpreter=py).stdout)["kept"])
    store = sum(p.stat().st_size for p in work.glob("cads.db*"))
    painted = subprocess.run([py, "-c", RENDER_AGAIN, str(db), str(PAINTER_SAMPLE)], capture_output=True, text=True, check=True)
    images, sampled, seconds = painted.stdout.split()
    return {
        "marks": sampler.marks,
        "kept": kept,
        "wall": wall,
        "peak_mib": usage.ru_maxrss / 1024,
        "worker_peak_mib": sampler.worker_peak_mib,
        "store_kib": store / 1024 / kept,
        "checkpoint_kib": checkpoint_bytes / 1024 / kept,
        "images": int(images),
        "painter_ms": 1000 * float(seconds) / int(sampled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--clean", action="store_true", help="the clean world, quality gates off")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=["built-in"],
                        help="weighted-dedup: consensus: {weighted: true} and the near-duplicate gate on")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    if sizes[0] < 100:
        raise SystemExit(f"error: --sizes {sizes[0]} is too small to time; use 100 or more")
    py = python()
    world = "the clean world, gates off" if args.clean else "the built-in config (harder world, its gates on)"
    print(f"simulated panel, {world}, {args.lanes} lanes; one `cads run` to {sizes[-1]} per setting, read at "
          f"{', '.join(map(str, sizes))} (figures of the simulator, not of any model)")
    results: dict[str, dict] = {}
    for setting in args.settings:
        print(f"setting {setting}:")
        with tempfile.TemporaryDirectory() as work:
            r = results[setting] = run_once(py, sizes, args.lanes, Path(work), args.clean, setting)
        painter = r["painter_ms"] * r["images"] / 1000
        print(
            f"  whole run: kept {r['kept']} in {r['wall']:.1f} s; painter alone {r['painter_ms']:.1f} ms an image "
            f"({r['images']} images, {painter:.0f} s), run/painter {r['wall'] / painter:.1f}x; peak of any of its processes {r['peak_mib']:.0f} MiB "
            f"(of a painter worker {r['worker_peak_mib']:.0f} MiB); "
            f"store {r['store_kib'] * 1024:,.0f} bytes/kept ({r['store_kib']:.2f} KiB), checkpoints {r['checkpoint_kib']:.2f} KiB/kept"
        )
    print("as a ratio to the smallest size's, per setting (1.00 = flat):")
    print("  " + " ".join(f"{size:>8d}" for size in sizes) + "  figure, setting")
    for setting, r in results.items():
        for label, key in (("kept/s from the start", None), ("kept/s over the window", "window_rate"),
                           ("CPU per kept over the window", "window_cpu_ms"), ("share of problems kept", "window_kept_share"),
                           # A control: a problem's drawing does not depend on the run's size; the machine's speed does.
                           ("painting CPU per problem", "window_painting_ms"), ("peak memory", "peak_mib")):
            values = [m["kept"] / m["wall"] if key is None else m[key] for m in r["marks"]]
            print("  " + " ".join(f"{v / values[0]:8.2f}" for v in values) + f"  {label}, {setting}")


if __name__ == "__main__":
    main()
