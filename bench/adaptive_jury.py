"""The adaptive jury against the full one on the simulated panel, same seed, side by side.

Prints each jury's judge calls, kept samples and (simulated) kept-sample correctness, and how many
fewer judge calls the adaptive jury made. Figures are from the simulator, not from real models.

Usage: python bench/adaptive_jury.py [--rounds 20] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from importlib import resources
from pathlib import Path

import yaml

from cads_process import cads, python

JUDGES = 4  # the built-in panel's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    py = python()
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for jury in ("full", "adaptive"):
            config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
            config.update(jury=jury, rounds=args.rounds, target=100000, seed=args.seed)
            (Path(work) / f"{jury}.yaml").write_text(yaml.safe_dump(config))
            cads("run", f"{jury}.yaml", "--run-id", jury, cwd=work, interpreter=py)
            stats = json.loads(cads("stats", jury, "--json", cwd=work, interpreter=py).stdout)
            with sqlite3.connect(Path(work) / "cads.db") as db:
                calls = db.execute("SELECT count(*) FROM cads_calls WHERE run = ? AND role = 'judge'", (jury,)).fetchone()[0]
            rows[jury] = {"calls": calls, "kept": stats["kept"], "correct": stats["truth"]["kept_correct_rate"],
                          "splits": stats["adversarial"]}
    print(f"simulated panel, seed {args.seed}, {args.rounds} rounds (simulated figures)")
    for jury, r in rows.items():
        print(f"  {jury:8s} jury: {r['calls']:6d} judge calls, {r['kept']} kept, kept-sample correctness {r['correct']:.1%}")
    full, adaptive = rows["full"], rows["adaptive"]
    print(f"  adaptive / full judge calls: {adaptive['calls'] / full['calls']:.2f} "
          f"({1 - adaptive['calls'] / full['calls']:.1%} fewer); correctness difference "
          f"{100 * (adaptive['correct'] - full['correct']):+.1f} points")
    # Only a split can settle before every judge answers, and no sooner than after two of them.
    ceiling = full["splits"] * (JUDGES - 2) / full["calls"]
    print(f"  the most any order could save on this data: {ceiling:.1%} "
          f"({full['splits']} splits, each settled after 2 of {JUDGES} judges at best)")


if __name__ == "__main__":
    main()
