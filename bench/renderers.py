"""The painter's image kinds: render time per kind, and kept correctness per kind on the SIMULATED world.

Part 1, render time: for each kind, `--images` specs from the simulated world's templates of that
kind (levels spread over 0..1, as the world draws them), each rendered to PNG bytes in this process
after one warm-up render (library imports are not counted). Prints the median and 90th percentile
in ms per image and the ratio of each median to the slowest of the six original kinds. Target: no
new kind above 5x that slowest original median.

Part 2, kept correctness per kind: one simulated run with the default config (the harder world's
failure modes, the default gates) to `--target` kept samples, then `cads stats --json`'s by_kind:
proposals, render failures, kept, and the share of kept samples whose reference is the simulator's
true answer. Beside it, the same run in a world with no shared blind spots (`blind_spot_share: 0`):
on a blind-spot template every model makes one mistake, so no jury of them can catch it, whatever
the image kind. Target: at least 98% for every kind. Every figure of part 2 is from the simulator,
not from real models.

Usage: python bench/renderers.py [--images 60] [--target 1500] [--lanes 2] [--seed 0] [--skip-run]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

from cads_process import cads, python, reexec_with_cadsynth

ORIGINAL = ("bar_chart", "line_chart", "pie_chart", "table", "geometry", "shape_scene")
WORLDS = (("default world", True), ("no blind spots", False))
LIMIT = 5.0  # a new kind's median at most this many times the slowest original kind's


def render_times(images: int) -> dict[str, list[float]]:
    from cadsynth.agents.painter.render import render
    from cadsynth.agents.sim.world import TEMPLATES, World

    world = World()
    by_kind: dict[str, list[str]] = {}
    for t in TEMPLATES.values():
        by_kind.setdefault(t.kind, []).append(t.id)
    times: dict[str, list[float]] = {}
    for kind, templates in by_kind.items():
        rng = random.Random(f"bench-{kind}")
        specs = [world.generate(rng, templates[i % len(templates)], i / max(1, images - 1)).spec for i in range(images)]
        render(specs[0])  # warm-up: imports and caches
        out = []
        for spec in specs:
            t0 = time.perf_counter()
            render(spec)
            out.append((time.perf_counter() - t0) * 1000)
        times[kind] = out
    return times


def kept_by_kind(target: int, lanes: int, seed: int, blind_spots: bool = True) -> dict:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(rounds=400, target=target, seed=seed)
    if not blind_spots:
        config["world"] = {**config.get("world", {}), "blind_spot_share": 0.0}
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "bench.yaml").write_text(yaml.safe_dump(config))
        py = python()
        t0 = time.monotonic()
        cads("run", "bench.yaml", "--run-id", "kinds", "--lanes", str(lanes), cwd=work, interpreter=py)
        wall = time.monotonic() - t0
        stats = json.loads(cads("stats", "kinds", "--json", cwd=work, interpreter=py).stdout)
    return {"wall": wall, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=60, help="specs rendered per kind")
    parser.add_argument("--target", type=int, default=1500, help="kept samples of the simulated run")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-run", action="store_true", help="render times only")
    args = parser.parse_args()

    times = render_times(args.images)
    slowest = max(statistics.median(times[k]) for k in ORIGINAL)
    print(f"Render time per image, {args.images} specs per kind from the world's templates (one process, after a warm-up)")
    print(f"{'kind':<16}{'median ms':>10}{'p90 ms':>9}{'x slowest original':>20}")
    worst = 0.0
    for kind in [*ORIGINAL, *sorted(k for k in times if k not in ORIGINAL)]:
        ts = sorted(times[kind])
        median = statistics.median(ts)
        ratio = median / slowest
        if kind not in ORIGINAL:
            worst = max(worst, ratio)
        print(f"{kind:<16}{median:>10.1f}{ts[int(0.9 * (len(ts) - 1))]:>9.1f}{ratio:>20.2f}{'' if kind in ORIGINAL else '  (new)'}")
    print(f"slowest new kind: {worst:.2f}x the slowest original median ({slowest:.1f} ms); target <= {LIMIT:g}x: "
          f"{'met' if worst <= LIMIT else 'MISSED'}")
    if args.skip_run:
        return

    runs = {label: kept_by_kind(args.target, args.lanes, args.seed, blind_spots) for label, blind_spots in WORLDS}
    print(f"\nSIMULATED runs, seed {args.seed}, {args.lanes} lanes, default config (harder world, default gates), "
          "and the same world with no shared blind spots (templates where every model makes one mistake, which no "
          "jury of those models can catch: the method's own limit, not a renderer's)")
    for label, run in runs.items():
        s = run["stats"]
        print(f"  {label}: {s['proposals']} proposals, {s['kept']} kept, kept correctness "
              f"{s['truth']['kept_correct_rate']:.2%} (simulated), wall {run['wall']:.0f} s")
    labels = list(runs)
    print(f"{'kind':<16}{'proposals':>10}{'unpainted':>10}{'kept':>6}" + "".join(f"{'correct, ' + label:>28}" for label in labels))
    short: dict[str, list[str]] = {label: [] for label in labels}
    for kind, row in runs[labels[0]]["stats"]["by_kind"].items():
        shown = []
        for label in labels:
            other = runs[label]["stats"]["by_kind"].get(kind, {})
            rate = other.get("kept_correct_rate")
            if rate is not None and rate < 0.98:
                short[label].append(kind)
            shown.append("-" if rate is None else f"{rate:.2%} of {other['kept_checked']}")
        print(f"{kind:<16}{row['proposals']:>10}{row['render_failures']:>10}{row['kept']:>6}" + "".join(f"{x:>28}" for x in shown))
    for label in labels:
        print(f"kept correctness >= 98% for every kind (simulated, {label}): "
              f"{'met' if not short[label] else 'MISSED for ' + ', '.join(short[label])}")

if __name__ == "__main__":
    reexec_with_cadsynth()
    main()
