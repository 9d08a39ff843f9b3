"""Paper scale on the simulated panel: `cads run --target N` as one command, at several sizes.

For each size it prints (figures of the simulated panel, which answers at once):
  * wall time and kept samples per second of the whole `cads run` process;
  * the painter alone: rendering every image of the run again in one process, the physical limit
    of this pipeline, and the run's wall time as a multiple of it;
  * peak memory of the run process, and its ratio to the smallest size's;
  * the store on disk per kept sample, and the checkpoint tables' share of it (the run has the
    default id `cads run` gives it, which every record row repeats).

With --clean the run is the clean world with the quality gates off (no failure modes, no blind
pass, no rechecks): the pipeline's own cost per sample, as before the gates existed.

--settings runs each size under each named setting: `built-in` (the config as shipped) and
`weighted-dedup` (`consensus: {weighted: true}` and the near-duplicate gate on, the costliest per
round). At the end it prints kept samples per second at each size as a ratio to the smallest
size's, per setting, side by side: a flat cost per sample reads 1.00 all along.

Usage: python bench/paper_scale.py [--sizes 2000 20000] [--lanes 8] [--clean] [--settings built-in weighted-dedup]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

from cads_process import cads, python, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.config import WorldConfig  # noqa: E402

RENDER_AGAIN = """
import sqlite3, sys, time, json
from cadsynth.agents.painter.render import render
from cadsynth.specs import parse_spec
db = sqlite3.connect(sys.argv[1])
specs = [parse_spec(json.loads(r)["image_spec"]) for (r,) in db.execute("SELECT record FROM cads_proposals")
         if json.loads(r).get("image_spec")]
start = time.perf_counter()
for spec in specs:
    render(spec)
print(len(specs), time.perf_counter() - start)
"""


SETTINGS = ("built-in", "weighted-dedup")


def run_once(py: str, target: int, lanes: int, work: Path, clean: bool, setting: str = "built-in") -> dict[str, float]:
    # The run's own id, as a user's run gets it: the id is in every record row, so its length shows in the store.
    cmd = [py, "-m", "cadsynth.cli", "run", "--target", str(target), "--rounds", "1000", "--lanes", str(lanes)]
    if clean or setting != "built-in":
        config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
        if clean:
            config.update(gates={}, world=WorldConfig.clean().model_dump(mode="json"))
        if setting == "weighted-dedup":
            config["consensus"] = {**config.get("consensus", {}), "weighted": True}
            config["gates"] = {**config.get("gates", {}), "near_duplicates": {"enabled": True}}
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        cmd.insert(4, "config.yaml")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"error: `cads run` exited {status}: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    db = work / "cads.db"
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
    images, painter = subprocess.run([py, "-c", RENDER_AGAIN, str(db)], capture_output=True, text=True, check=True).stdout.split()
    return {
        "kept": kept,
        "wall": wall,
        "peak_mib": usage.ru_maxrss / 1024,
        "store_kib": store / 1024 / kept,
        "checkpoint_kib": checkpoint_bytes / 1024 / kept,
        "images": int(images),
        "painter": float(painter),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--clean", action="store_true", help="the clean world, quality gates off")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=["built-in"],
                        help="weighted-dedup: consensus: {weighted: true} and the near-duplicate gate on")
    args = parser.parse_args()
    py = python()
    world = "the clean world, gates off" if args.clean else "the built-in config (harder world, its gates on)"
    print(f"simulated panel, {world}, {args.lanes} lanes; one `cads run` per size (figures of the simulator, not of any model)")
    rates: dict[str, list[float]] = {}
    for setting in args.settings:
        print(f"setting {setting}:")
        rates[setting] = [r["kept"] / r["wall"] for r in sizes(py, args, setting)]
    print("kept/s as a ratio to the smallest size's, per setting:")
    print("  " + " ".join(f"{target:>10d}" for target in args.sizes) + "  setting")
    for setting, per_size in rates.items():
        print("  " + " ".join(f"{rate / per_size[0]:10.2f}" for rate in per_size) + f"  {setting} ({per_size[0]:.1f} kept/s at {args.sizes[0]})")


def sizes(py: str, args: argparse.Namespace, setting: str) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for target in args.sizes:
        with tempfile.TemporaryDirectory() as work:
            rows.append(run_once(py, target, args.lanes, Path(work), args.clean, setting))
        r = rows[-1]
        print(
            f"  target {target:6d}: kept {r['kept']:6d} in {r['wall']:7.1f} s ({r['kept'] / r['wall']:5.1f} kept/s); "
            f"painter alone {r['painter']:6.1f} s for {r['images']} images ({1000 * r['painter'] / r['images']:.1f} ms each), "
            f"run/painter {r['wall'] / r['painter']:4.1f}x; peak {r['peak_mib']:.0f} MiB "
            f"({r['peak_mib'] / rows[0]['peak_mib']:.2f}x the first size); store {r['store_kib'] * 1024:,.0f} bytes/kept "
            f"({r['store_kib']:.2f} KiB), "
            f"checkpoints {r['checkpoint_kib']:.2f} KiB/kept"
        )
    return rows


if __name__ == "__main__":
    main()
