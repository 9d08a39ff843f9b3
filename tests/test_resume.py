"""Crash safety: SIGKILL a run at several points, resume it each time, and get the same data set.

The kill points are chosen by watching the ledger's call log from outside, like an operator
pulling the plug: mid-proposing, mid-critique, mid-judging (twice) and early in a later round.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.helpers import cads, content, count_calls, run_until_killed
from tests.helpers import export as _export

pytestmark = pytest.mark.slow  # every test kills a `cads` process, or starts a second one

SEED, ROUNDS = "5", "4"
RUN = ["--seed", SEED, "--rounds", ROUNDS, "--target", "1000"]
CONCURRENCY = 8  # the built-in panel's default: at most this many calls in flight at a kill

# (description, SQL counting calls; the kill comes once the count reaches the threshold)
KILL_POINTS = [
    ("mid-proposing, round 0", "role = 'proposer' AND round = 0", 5),
    ("mid-critique, round 0", "role = 'critic' AND round = 0", 10),
    ("mid-judging, round 0", "role = 'judge' AND round = 0", 20),
    ("early round 1", "role = 'proposer' AND round = 1", 3),
    ("mid-judging, round 2", "role = 'judge' AND round = 2", 25),
]


def _panel_with_latency(work: Path, latency: float = 0.15) -> str:
    """The built-in panel, but each simulated call takes as long as a (fast) real model's."""
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    for agent in config["panel"]:
        agent["sim"]["latency"] = latency
    (work / "panel.yaml").write_text(yaml.safe_dump(config))
    return "panel.yaml"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    work = tmp_path_factory.mktemp("crash")
    panel = _panel_with_latency(work)
    cads("run", panel, "--run-id", "clean", *RUN, cwd=work)
    db = work / "cads.db"
    calls_at_kills = []
    base = count_calls(db, "1 = 1")
    args = ["run", panel, "--run-id", "crashy", *RUN]
    for _, where, threshold in KILL_POINTS:
        calls_at_kills.append(run_until_killed(args, work, db, f"run = 'crashy' AND {where}", threshold) - base)
        args = ["resume", "crashy"]
    killed = cads("runs", cwd=work).stdout  # the last kill's run, as a person would see it
    cads("resume", "crashy", cwd=work)
    return work, calls_at_kills, killed


def test_every_kill_point_was_reached_before_the_run_finished(crashed):
    _, calls_at_kills, _ = crashed
    assert len(calls_at_kills) == len(KILL_POINTS)
    assert calls_at_kills == sorted(calls_at_kills) and calls_at_kills[0] > 0


def test_a_killed_run_shows_as_interrupted_with_how_to_resume(crashed):
    _, _, killed = crashed
    line = next(line for line in killed.splitlines() if "crashy" in line)
    assert "interrupted" in line and "running" not in line
    assert "cads resume crashy" in killed


def test_the_resumed_data_set_equals_the_uninterrupted_one(crashed):
    work, _, _ = crashed
    clean, resumed = _export("clean", work), _export("crashy", work)
    ids = [s["id"] for s in resumed]
    assert len(ids) == len(set(ids)), "duplicate samples"
    assert len(resumed) == len(clean) > 0
    assert content(resumed) == content(clean)
    status = json.loads(cads("stats", "crashy", "--json", cwd=work).stdout)
    assert status["status"] == "done" and len(status["rounds"]) == int(ROUNDS)


def test_finished_calls_are_not_made_again(crashed):
    work, _, _ = crashed
    clean = json.loads(cads("stats", "clean", "--json", cwd=work).stdout)["model_calls"]
    resumed = json.loads(cads("stats", "crashy", "--json", cwd=work).stdout)["model_calls"]
    # Only calls in flight at a kill may be repeated: at most `concurrency` per kill.
    assert clean <= resumed <= clean + CONCURRENCY * len(KILL_POINTS), f"clean {clean}, resumed {resumed}"


def test_a_second_process_cannot_advance_a_running_run(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen([sys.executable, "-m", "cadsynth.cli", "run", "--run-id", "busy", "--rounds", "50",
                              "--target", "100000"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count_calls(tmp_path / "cads.db", "run = 'busy'") < 20:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        second = cads("resume", "busy", cwd=tmp_path, check=False)
        assert second.returncode == 2
        assert "being advanced by another process" in second.stderr
        assert json.loads(cads("stats", "busy", "--json", cwd=tmp_path).stdout)["status"] == "running"
    finally:
        first.kill()
        first.wait()
    assert json.loads(cads("stats", "busy", "--json", cwd=tmp_path).stdout)["status"] == "interrupted"
    # Once the holder is dead, the run can be resumed at once: no stale lease blocks it.
    before = count_calls(tmp_path / "cads.db", "run = 'busy'")
    after = run_until_killed(["resume", "busy"], tmp_path, tmp_path / "cads.db", "run = 'busy'", before + 20)
    assert after >= before + 20


def test_twenty_kills_at_random_moments_lose_nothing(tmp_path):
    """Killed 20 times at random points (seeded), the run still ends with the uninterrupted data set."""
    panel = _panel_with_latency(tmp_path, latency=0.05)
    cads("run", panel, "--run-id", "clean", *RUN, cwd=tmp_path)
    db, rng = tmp_path / "cads.db", random.Random(2026)
    args, kills = ["run", panel, "--run-id", "many", *RUN], 0
    while kills < 20:
        threshold = count_calls(db, "run = 'many'") + rng.randint(1, 30)
        try:
            run_until_killed(args, tmp_path, db, "run = 'many'", threshold)
        except AssertionError as ended:  # the run finished before this kill point
            assert "ended before the kill point" in str(ended)
            break
        kills, args = kills + 1, ["resume", "many"]
    else:
        cads("resume", "many", cwd=tmp_path)
    assert kills >= 15  # most of the 20 landed inside the run
    clean, resumed = content(_export("clean", tmp_path)), content(_export("many", tmp_path))
    assert resumed == clean and len(resumed) > 0
    calls = {run: count_calls(db, f"run = '{run}'") for run in ("clean", "many")}
    assert calls["clean"] <= calls["many"] <= calls["clean"] + CONCURRENCY * kills
