"""Ablation of the quality gates on the harder SIMULATED world: every gate off, each gate on alone,
all on; same seed, same target.

Prints, per setting: kept samples, kept-sample correctness, the kept shares that are answerable
from the text or whose image contradicts the question (the simulator's truth), duplicate pairs in
the export, and the calls and cost per kept sample the gates add over all-off. The simulated models
are free, so cost is priced as if each were gpt-4o-mini (token counts are the prompts' and answers'
own): a relative figure, not a bill. Every figure is from the simulator, not from real models.

Usage: python bench/quality_gates.py [--target 200] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from importlib import resources
from pathlib import Path

import yaml

from cads_process import cads, python

# The gates, each with the config that turns it on alone; "all on" merges them. A gate added later
# goes here and gets its own row.
GATES: dict[str, dict] = {
    "image necessity": {"gates": {"image_necessity": True}},
    "consistency": {"gates": {"consistency": True}},
    "near-duplicates": {"gates": {"near_duplicates": {"enabled": True}}},
    "judge reliability": {"consensus": {"weighted": True}},
}
PRICE = {"input": 0.15, "output": 0.60}  # gpt-4o-mini's list price, USD per million tokens


def _merged(parts: list[dict]) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def settings() -> dict[str, dict]:
    return {"all off": {}, **{f"{name} only": on for name, on in GATES.items()}, "all on": _merged(list(GATES.values()))}


def _exact_duplicate_pairs(samples: list[dict]) -> int:
    """Pairs of exported samples with the same image file and the same question (up to case and spaces)."""
    groups = Counter((Path(s["image"]).name, " ".join(s["question"].lower().split())) for s in samples)
    return sum(n * (n - 1) // 2 for n in groups.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    py = python()
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for i, (name, extra) in enumerate(settings().items()):
            config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
            config.update(rounds=200, target=args.target, seed=args.seed, gates={})
            config["prices"] = {agent["model"]: PRICE for agent in config["panel"]}
            config = _merged([config, extra])
            run = f"setting{i}"
            (Path(work) / f"{run}.yaml").write_text(yaml.safe_dump(config))
            # Each setting pays for its own calls: the settings share a store, and its call cache
            # would answer a later setting's identical calls for free.
            cads("run", f"{run}.yaml", "--run-id", run, "--no-cache", cwd=work, interpreter=py)
            stats = json.loads(cads("stats", run, "--json", cwd=work, interpreter=py).stdout)
            out = Path(work) / f"{run}-export"
            cads("export", run, "--out", str(out), cwd=work, interpreter=py)
            samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
            truth = stats["truth"]
            rows[name] = {
                "kept": stats["kept"], "exported": len(samples), "correct": truth["kept_correct_rate"],
                "text": truth["kept_text_answerable_rate"], "conflict": truth["kept_conflict_rate"],
                "exact_dups": _exact_duplicate_pairs(samples), "near_dups": truth["kept_duplicate_pairs"],
                "calls": stats["model_calls"], "usd": stats["cost"]["usd"],
                "removed": {gate: g["removed"] for gate, g in stats["gates"].items() if g["on"]},
            }
    print(f"SIMULATED world (built-in panel, harder world at its default rates), seed {args.seed}, target {args.target} kept")
    print("cost: the simulated models priced as gpt-4o-mini, from their token counts (relative, not a bill)")
    head = f"{'setting':24s} {'kept':>5s} {'exported':>9s} {'correct':>8s} {'text-ans':>9s} {'conflict':>9s} {'dup pairs':>10s} {'calls/sample':>13s} {'extra':>7s} {'$/sample':>9s} {'extra $':>9s}"
    print(head)
    base = rows["all off"]
    # Per sample of the data set: what the export holds (the near-duplicate gate removes kept ones).
    base_calls, base_usd = base["calls"] / max(1, base["exported"]), base["usd"] / max(1, base["exported"])
    for name, r in rows.items():
        per_call, per_usd = r["calls"] / max(1, r["exported"]), r["usd"] / max(1, r["exported"])
        dups = f"{r['exact_dups']}/{r['near_dups']}"
        print(
            f"{name:24s} {r['kept']:5d} {r['exported']:9d} {r['correct']:8.1%} {r['text']:9.1%} {r['conflict']:9.1%} {dups:>10s} "
            f"{per_call:13.2f} {per_call - base_calls:+7.2f} {per_usd:9.6f} {per_usd - base_usd:+9.6f}"
        )
    print("dup pairs: exact duplicates in the export (same image, same question) / near-duplicate pairs in the export by the simulator's truth")
    for name, r in rows.items():
        if r["removed"]:
            print(f"  {name}: removed by gate " + ", ".join(f"{g} {n}" for g, n in r["removed"].items()))


if __name__ == "__main__":
    main()
