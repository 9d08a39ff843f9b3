"""Lanes: one run made of independent debates side by side, still one data set to the user.

Each lane has its own context and seed, shares the panel, cache and store, and can be resumed
and forked; the same seed and lane count give the same data set.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.helpers import cads, content, count_calls, run_until_killed, stats
from tests.helpers import export as _export

LANES = ["--lanes", "3", "--seed", "7", "--rounds", "3", "--target", "1000"]


@pytest.fixture(scope="module")
def laned(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("lanes")
    (work / "a.out").write_text(cads("run", "--run-id", "a", *LANES, cwd=work).stdout)
    cads("run", "--run-id", "b", *LANES, cwd=work)
    return work


def test_a_run_with_lanes_is_one_data_set(laned):
    s = stats("a", laned)
    assert s["status"] == "done" and [lane["lane"] for lane in s["lanes"]] == [0, 1, 2]
    for key in ("proposals", "kept", "adversarial", "discarded"):
        assert s[key] == sum(lane[key] for lane in s["lanes"]) > 0 or key == "discarded"
    assert sum(r["proposals"] for r in s["rounds"]) == s["proposals"]
    samples = _export("a", laned)
    assert len(samples) == s["kept"] and {x["lane"] for x in samples} == {0, 1, 2}
    # Lanes are different debates: their own seeds, so their own problems.
    questions = [{x["question"] for x in samples if x["lane"] == i} for i in range(3)]
    assert questions[0] != questions[1] != questions[2]
    listed = cads("runs", cwd=laned).stdout
    assert "3 lanes" in listed and "a.lane0" not in listed  # lanes are listed with their run


def test_the_line_a_run_ends_with_agrees_with_its_stats(laned):
    s = stats("a", laned)
    line = (laned / "a.out").read_text().strip().splitlines()[-1]
    assert line.startswith(
        f"kept {s['kept']} samples ({s['adversarial']} adversarial), discarded {s['discarded']}, {s['model_calls']} model calls."
    ), line


def test_the_same_seed_and_lanes_give_the_same_data_set(laned):
    assert content(_export("a", laned)) == content(_export("b", laned))


@pytest.mark.slow  # kills a process, twice
def test_a_killed_run_with_lanes_resumes_to_the_same_data_set(laned):
    # The same run, killed twice mid-flight and resumed. Its calls take as long as a fast model's,
    # so that calls in flight at a kill are few and countable (the simulator answers the same).
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    for agent in config["panel"]:
        agent["sim"]["latency"] = 0.1
    (laned / "slow.yaml").write_text(yaml.safe_dump(config))
    db = laned / "cads.db"
    run_until_killed(["run", "slow.yaml", "--run-id", "k", *LANES], laned, db, "run LIKE 'k.lane%' AND role = 'judge'", 30)
    run_until_killed(["resume", "k"], laned, db, "run LIKE 'k.lane%' AND round = 1 AND role = 'judge'", 20)
    cads("resume", "k", cwd=laned)
    assert stats("k", laned)["status"] == "done"
    resumed, clean = _export("k", laned), _export("a", laned)
    assert len({x["id"] for x in resumed}) == len(resumed)
    assert content(resumed) == content(clean)
    # Only calls in flight at the two kills are made again: the lanes share one gate of 8.
    extra = count_calls(laned / "cads.db", "run LIKE 'k.lane%'") - count_calls(laned / "cads.db", "run LIKE 'a.lane%'")
    assert 0 <= extra <= 2 * 8


def test_show_gives_each_lane(laned):
    out = cads("show", "a", "--round", "1", cwd=laned).stdout
    assert all(f"lane {i}: a.lane{i} done" in out for i in range(3))
    assert all(f"lane a.lane{i}" in out for i in range(3))
    one = cads("show", "a", "--round", "1", "--lane", "2", cwd=laned).stdout
    assert "lane a.lane2" in one and "lane a.lane0 " not in one
    bad = cads("show", "a", "--lane", "3", cwd=laned, check=False)
    assert bad.returncode == 2 and "--lane 3: run 'a' has lanes 0..2" in bad.stderr


def test_replay_forks_every_lane_or_one(laned):
    cads("replay", "a", "--round", "2", "--run-id", "fa", cwd=laned)
    parent, fork = stats("a", laned), stats("fa", laned)
    assert fork["status"] == "done" and len(fork["lanes"]) == 3 and fork["parent"] == "a"
    for p, f in zip(parent["lanes"], fork["lanes"]):
        assert f["rounds"] == p["rounds"]
    # Rounds before the fork are shared, lane by lane.
    assert fork["rounds"][:2] == parent["rounds"][:2]
    cads("replay", "a", "--round", "1", "--lane", "1", "--run-id", "f1", cwd=laned)
    one = stats("f1", laned)
    assert "lanes" not in one and one["parent"] == "a.lane1" and one["status"] == "done"
    assert stats("a", laned) == parent  # the original is untouched


async def test_live_progress_counts_what_stats_count(tmp_path: Path) -> None:
    """The live display reads the ledger as `stats` does (runner.refresh, on Ray too): at the end
    of a run with lanes its counts are the run's, and it saw them grow, never shrink."""
    from cadsynth.config import load_config
    from cadsynth.graphs.settings import Settings
    from cadsynth.report import stats as run_stats
    from cadsynth.runner import Progress, execute
    from cadsynth.store.ledger import Ledger

    config = load_config(None).model_copy(update={"lanes": 2, "rounds": 2, "target": 1000})
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'cads.db'}", data_dir=str(tmp_path / "data"))
    seen: list[dict[str, int]] = []

    def on_update(progress: Progress) -> None:
        seen.append(progress.counts)

    done = await execute(settings, "live", config, on_update=on_update)
    ledger = Ledger.open(settings.db_url)
    try:
        s = await run_stats(ledger, "live")
    finally:
        await ledger.close()
    assert {k: done.counts[k] for k in ("kept", "adversarial", "discarded", "dropped")} == {
        k: s[k] for k in ("kept", "adversarial", "discarded", "dropped")
    }
    assert done.lanes == done.lanes_done == 2 and done.phase == "done"
    kept = [c["kept"] for c in seen]
    assert kept == sorted(kept) and 0 < kept[-1] == s["kept"]


async def test_while_lanes_run_the_collector_skips_what_start_up_loaded(tmp_path: Path) -> None:
    """A run lives for hours: while its lanes run, what was loaded before them is frozen out of
    full collections and the young generation is collected less often (runner._collector_for_hours);
    once they stop the process's collector is as it was."""
    import gc

    from cadsynth.config import load_config
    from cadsynth.graphs.settings import Settings
    from cadsynth.runner import YOUNG_COLLECTION, Progress, execute

    config = load_config(None).model_copy(update={"lanes": 2, "rounds": 1, "target": 1000})
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'cads.db'}", data_dir=str(tmp_path / "data"))
    before = gc.get_threshold()
    seen: list[tuple[int, int]] = []

    def on_update(progress: Progress) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))

    done = await execute(settings, "gc", config, on_update=on_update)
    assert done.phase == "done" and seen
    # Frozen: the modules, schemas and graph loaded before the lanes (tens of thousands of objects).
    assert all(frozen > 10_000 and young == YOUNG_COLLECTION for frozen, young in seen[:-1]), seen[:3]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
