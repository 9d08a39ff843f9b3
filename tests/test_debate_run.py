"""Whole runs of `cads` on the simulated panel, driven through the console script like a user would.

The simulator knows the truth, so these tests measure what the method promises: the jury filters
flawed problems, the adversary makes rounds that split the panel more often, and a seed is a
reproducible data set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CADS = [sys.executable, "-m", "cadsynth.cli"]
SEED = "11"
ROUNDS = "6"


def cads(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CADS_DB", None)
    env.pop("CADS_DATA", None)
    result = subprocess.run([*CADS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"cads {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def stats(run: str, cwd: Path) -> dict:
    return json.loads(cads("stats", run, "--json", cwd=cwd).stdout)


def export(run: str, cwd: Path) -> list[dict]:
    out = cwd / f"{run}.jsonl"
    cads("export", run, "--out", str(out), cwd=cwd)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three runs on one seed: adversary on (twice) and off. Targets are out of reach so every round runs."""
    work = tmp_path_factory.mktemp("runs")
    common = ["--seed", SEED, "--rounds", ROUNDS, "--target", "1000"]
    cads("run", "--run-id", "adv", *common, cwd=work)
    cads("run", "--run-id", "adv-again", *common, cwd=work)
    cads("run", "--run-id", "flat", "--no-adversary", *common, cwd=work)
    return work


def test_the_jury_filters_flawed_problems(runs):
    s = stats("adv", runs)
    truth = s["truth"]
    assert s["kept"] > 0 and s["discarded"] > 0
    # Raw proposals carry the proposers' flaws; consensus must remove most of them.
    assert truth["kept_correct_rate"] >= truth["proposal_correct_rate"] + 0.05
    assert truth["kept_correct_rate"] >= 0.9


def _late_pool_share(s: dict) -> float:
    late = [r for r in s["rounds"] if r["round"] >= 2]
    return sum(r["adversarial"] for r in late) / sum(r["proposals"] for r in late)


def test_the_adversary_makes_later_rounds_split_the_panel_more(runs):
    with_adversary, without = stats("adv", runs), stats("flat", runs)
    assert len(with_adversary["rounds"]) == len(without["rounds"]) == int(ROUNDS)
    assert _late_pool_share(with_adversary) > _late_pool_share(without) + 0.05
    # The adversary works by raising difficulty where the panel agreed too easily.
    assert with_adversary["rounds"][-1]["mean_difficulty"] > without["rounds"][-1]["mean_difficulty"]


def _content(samples: list[dict]) -> list[dict]:
    # Run ids and data folders differ between runs; everything else must be identical.
    return [
        {**{k: v for k, v in s.items() if k not in ("id", "run", "image")}, "image": Path(s["image"]).name}
        for s in samples
    ]


def test_the_same_seed_gives_the_same_data_set(runs):
    first, second = export("adv", runs), export("adv-again", runs)
    assert len(first) > 0
    assert _content(first) == _content(second)
    assert stats("adv", runs)["model_calls"] == stats("adv-again", runs)["model_calls"]


def test_export_points_at_images_and_carries_provenance(runs):
    samples = export("adv", runs)
    s = stats("adv", runs)
    assert len(samples) == s["kept"]
    for sample in samples:
        assert Path(sample["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sample["outcome"] in ("keep", "adversarial")
        assert sample["consensus"] >= 1
        assert (sample["outcome"] == "adversarial") == (sample["consensus"] < sample["judges"])
        assert sample["strategy"] and 1 <= len(sample["capabilities"]) <= 3
        assert sample["question"] and sample["answer"] and sample["proposer"].startswith("sim-")


def test_show_prints_the_debate_of_a_round(runs):
    out = cads("show", "adv", "--round", "1", cwd=runs).stdout
    assert "judge sim-" in out and "critic sim-" in out and "reference:" in out
    assert "adversary -> context v2" in out


def test_runs_lists_them(runs):
    out = cads("runs", cwd=runs).stdout
    for run in ("adv", "adv-again", "flat"):
        assert run in out


def test_a_run_id_cannot_be_reused(runs):
    result = cads("run", "--run-id", "adv", "--rounds", "1", cwd=runs, check=False)
    assert result.returncode == 2
    assert "already exists" in result.stderr
