"""Whole runs of `cads` on the simulated panel, driven through the console script like a user would.

The simulator knows the truth, so these tests measure what the method promises: the jury filters
flawed problems, the adversary makes rounds that split the panel more often, and a seed is a
reproducible data set.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from cadsynth.config import WorldConfig

from tests.helpers import cads, content, export, stats

# A seed whose flawed problems reach the jury unfixed. (At 11, since a spec's digest leaves out its
# canvas size, the simulator's draws differ and revision fixed all but one of the flaws.)
SEED = "12"
ROUNDS = "6"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three runs on one seed: adversary on (twice) and off. Targets are out of reach so every round runs."""
    work = tmp_path_factory.mktemp("runs")
    # The clean world: what these tests measure (the jury, the adversary, replay) is the debate's
    # own, not the harder world's failure modes or the gates (tests/test_gates.py has those).
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(world=WorldConfig.clean().model_dump(), gates={})
    (work / "clean.yaml").write_text(yaml.safe_dump(config))
    common = ["clean.yaml", "--seed", SEED, "--rounds", ROUNDS, "--target", "1000"]
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


def test_the_same_seed_gives_the_same_data_set(runs):
    first, second = export("adv", runs), export("adv-again", runs)
    assert len(first) > 0
    assert content(first) == content(second)
    assert stats("adv", runs)["model_calls"] == stats("adv-again", runs)["model_calls"]


def test_export_points_at_images_and_carries_provenance(runs):
    samples = export("adv", runs)
    s = stats("adv", runs)
    assert len(samples) == s["kept"]
    for sample in samples:
        assert (runs / "adv-jsonl" / sample["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sample["outcome"] in ("keep", "adversarial")
        assert sample["consensus"] >= 1
        assert (sample["outcome"] == "adversarial") == (sample["consensus"] < sample["judges"])
        assert sample["strategy"] and 1 <= len(sample["capabilities"]) <= 3
        assert sample["question"] and sample["answer"] and sample["proposer"].startswith("sim-")


def test_show_prints_the_debate_of_a_round(runs):
    out = cads("show", "adv", "--round", "1", cwd=runs).stdout
    assert "judge sim-" in out and "critic sim-" in out and "reference:" in out
    assert "adversary -> context v2" in out
    # Every problem ends with its consensus: score, judges and outcome (or why it had none).
    verdicts = [line for line in out.splitlines() if line.startswith("consensus: ")]
    assert len(verdicts) == stats("adv", runs)["rounds"][1]["proposals"]
    assert any(re.fullmatch(r"consensus: C=\d of K=\d judges; outcome (keep|adversarial|discard)", v) for v in verdicts)


def test_runs_lists_them_whole_in_any_terminal(runs):
    cads("run", "--run-id", "a-long-run-id-that-someone-will-copy-and-paste-0123456789", "--rounds", "1", cwd=runs)
    for columns in ("200", "40"):
        out = cads("runs", cwd=runs, env={"COLUMNS": columns}).stdout
        for run in ("adv", "adv-again", "flat", "a-long-run-id-that-someone-will-copy-and-paste-0123456789"):
            line = next(line for line in out.splitlines() if f" {run} " in line)
            assert " done " in line, out


def test_help_reads_plainly():
    out = cads("run", "--help", cwd=Path.cwd()).stdout
    assert "[CONFIG.yaml]" in out and "[[" not in out and "<bool>" not in out


def test_a_run_id_cannot_be_reused(runs):
    result = cads("run", "--run-id", "adv", "--rounds", "1", cwd=runs, check=False)
    assert result.returncode == 2
    assert "already exists" in result.stderr
