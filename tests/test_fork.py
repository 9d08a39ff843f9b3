"""Replay: fork a finished run before round 2 with another judge panel; the parent stays as it was."""

from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.helpers import cads, content
from tests.helpers import export as _export

RUN = ["--seed", "3", "--rounds", "4", "--target", "1000"]


def _other_judges(work: Path) -> str:
    """The built-in panel with one judge replaced by a much weaker one (who splits the panel far
    more often, so the rounds after the fork cannot come out the same by chance)."""
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(rounds=4, target=1000, seed=3)
    config["panel"][-1]["sim"] = {"skill": -3.0, "flaw_rate": 0.25}
    (work / "judges.yaml").write_text(yaml.safe_dump(config))
    return "judges.yaml"


def _json(*args: str, cwd: Path) -> dict:
    return json.loads(cads(*args, cwd=cwd).stdout)


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    work = tmp_path_factory.mktemp("fork")
    cads("run", "--run-id", "parent", *RUN, cwd=work)
    before = (_json("stats", "parent", "--json", cwd=work), _export("parent", work))
    cads("replay", "parent", "--round", "2", "--config", _other_judges(work), "--run-id", "child", cwd=work)
    return work, before


def test_fork_shares_the_rounds_before_the_fork_and_differs_after(forked):
    work, _ = forked
    parent, child = _json("stats", "parent", "--json", cwd=work), _json("stats", "child", "--json", cwd=work)
    assert child["parent"] == "parent" and child["status"] == "done"
    assert [r["round"] for r in child["rounds"]] == [0, 1, 2, 3]
    assert child["rounds"][:2] == parent["rounds"][:2]
    assert child["rounds"][2:] != parent["rounds"][2:]
    early = lambda samples: content([s for s in samples if s["round"] < 2])  # noqa: E731
    late = lambda samples: content([s for s in samples if s["round"] >= 2])  # noqa: E731
    assert early(_export("child", work)) == early(_export("parent", work))
    assert late(_export("child", work)) != late(_export("parent", work))
    # The fork paid only for the rounds it ran itself.
    assert 0 < child["model_calls"] < parent["model_calls"]


def test_parent_is_untouched(forked):
    work, (stats_before, export_before) = forked
    assert _json("stats", "parent", "--json", cwd=work) == stats_before
    assert _export("parent", work) == export_before


def test_show_names_parent_and_forks(forked):
    work, _ = forked
    assert "forks: child" in cads("show", "parent", cwd=work).stdout
    assert "forked from parent at round 2" in cads("show", "child", "--round", "2", cwd=work).stdout


def test_replay_errors(forked):
    work, _ = forked
    for args, expected in (
        (["replay", "nope", "--round", "2"], "no run 'nope'"),
        (["replay", "parent", "--round", "0"], "--round 0: run 'parent' has rounds 0..3; pick 1..3"),
        (["replay", "parent", "--round", "9"], "--round 9: run 'parent' has rounds 0..3; pick 1..3"),
        (["resume", "parent"], "has finished"),
    ):
        result = cads(*args, cwd=work, check=False)
        assert result.returncode == 2 and expected in result.stderr, result.stderr


def test_a_round_replayed_with_the_same_panel_is_answered_from_the_call_cache(forked):
    """The simulated panel walks a real model's path: its calls are fingerprinted and kept, so a
    round asked again with the same messages is answered from the store, with the same data."""
    work, _ = forked
    cads("replay", "parent", "--round", "3", "--run-id", "again", cwd=work)
    with sqlite3.connect(work / "cads.db") as db:
        cached = dict(db.execute("SELECT cached, count(*) FROM cads_calls WHERE run = 'again' GROUP BY cached").fetchall())
    assert cached.get(1, 0) > 0 and cached.get(0, 0) == 0  # every call of its round, and none paid again
    assert _json("stats", "again", "--json", cwd=work)["cost"]["cached_calls"] == cached[1]
    last = lambda samples: content([s for s in samples if s["round"] == 3])  # noqa: E731
    assert last(_export("again", work)) == last(_export("parent", work))
