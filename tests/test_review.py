"""Human review: `review: true` pauses each round after its consensus; a person's decisions (here
through `cads review`) are the outcomes the round goes on with, and what exports and stats show."""

from __future__ import annotations

import asyncio
import getpass
import sqlite3
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.helpers import cads, export, stats


def review_config(work: Path, **changes: object) -> str:
    """The built-in panel with review on, small enough to be quick (and with two kept problems in round 0 to decide)."""
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config |= {"review": True, "rounds": 2, "target": 1000, "proposals_per_agent": 3, **changes}
    (work / "review.yaml").write_text(yaml.safe_dump(config))
    return "review.yaml"


def waiting(work: Path, run: str) -> list[dict]:
    """The review pauses `cads review` would show: one per waiting lane (or the run)."""
    from cadsynth.runner import waiting_for_review
    from cadsynth.store.ledger import Ledger

    async def go() -> list[dict]:
        ledger = Ledger.open(f"sqlite:///{work / 'cads.db'}")
        try:
            return await waiting_for_review(ledger, run)
        finally:
            await ledger.close()

    return asyncio.run(go())


def rows(work: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(work / "cads.db") as db:
        return db.execute(sql).fetchall()


def status_line(work: Path, run: str) -> str:
    return next(line for line in cads("runs", cwd=work).stdout.splitlines() if f" {run} " in line)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run paused at round 0, reviewed with some outcomes changed, paused at round 1, accepted."""
    work = tmp_path_factory.mktemp("review")
    started = cads("run", review_config(work), "--run-id", "r", cwd=work)
    seen: dict = {"work": work, "started": started, "paused_status": status_line(work, "r"),
                  "paused_stats": stats("r", work), "reviews_while_paused": rows(work, "SELECT count(*) FROM cads_reviews")}
    [pause] = waiting(work, "r")
    seen["pause"] = pause
    computed = {p["id"]: p["outcome"] for p in pause["problems"]}
    kept = [pid for pid, outcome in computed.items() if outcome == "keep"]
    others = [pid for pid, outcome in computed.items() if outcome in ("discard", "adversarial")]
    # Two kept problems change (one leaves the kept samples, one joins the pool); any other is kept.
    decisions = {kept[0]: "discard", kept[1]: "pool", **({others[0]: "keep"} if others else {})}
    seen["decisions"], seen["computed"] = decisions, computed
    args = [arg for pid, outcome in decisions.items() for arg in ("--set", f"{pid}={outcome}")]
    seen["before"] = datetime.utcnow() - timedelta(seconds=1)
    seen["reviewed"] = cads("review", "r", *args, "--note", f"{kept[0]}=the bars are mislabelled", "--reviewer", "ann", cwd=work)
    seen["second_pause_status"] = status_line(work, "r")
    [seen["second_pause"]] = waiting(work, "r")
    seen["accepted"] = cads("review", "r", "--accept-all", cwd=work)
    return seen


def test_a_run_under_review_pauses_after_round_0s_consensus(reviewed):
    started, pause = reviewed["started"], reviewed["pause"]
    assert started.returncode == 0  # a pause, not a failure
    assert "round 0 is waiting for review" in started.stdout and "cads review r" in started.stdout
    assert "waiting for review" in reviewed["paused_status"] and "cads review r" in reviewed["paused_status"]
    assert reviewed["paused_stats"]["status"] == "waiting for review"
    # Nothing of round 0 is recorded as an outcome, or as a review, before a person decides.
    assert reviewed["paused_stats"]["kept"] == 0 and reviewed["paused_stats"]["rounds"] == []
    assert reviewed["reviews_while_paused"] == [(0,)]
    assert pause["reason"] == "review" and pause["run"] == "r" and pause["round"] == 0
    assert len(pause["problems"]) == 4 * 3 and all(p["id"].startswith("r/r0/") for p in pause["problems"])
    for p in pause["problems"]:  # images by their hash, never their bytes
        assert p["image"].startswith("sha256:") and len(p["image"]) < 80 and p["question"] and p["reference_answer"]


def test_the_decisions_are_what_the_export_writes(reviewed):
    work, decisions, computed = reviewed["work"], reviewed["decisions"], reviewed["computed"]
    everything = {s["id"]: s for s in export("r", work, "--include", "all") if s["round"] == 0}
    as_outcome = {"keep": "keep", "discard": "discard", "pool": "adversarial"}
    expected = {pid: as_outcome[decisions[pid]] if pid in decisions else outcome for pid, outcome in computed.items()
                if outcome != "dropped"}
    assert {pid: s["outcome"] for pid, s in everything.items()} == expected
    discarded, pooled = list(decisions)[:2]
    kept_ids = {s["id"] for s in export("r", work)}
    assert discarded not in kept_ids and pooled in kept_ids  # the discarded one left the kept samples
    assert pooled in {s["id"] for s in export("r", work, "--include", "adversarial")}  # and the pooled one joined the pool
    # stats count the decided outcomes too
    round0 = stats("r", work)["rounds"][0]
    assert round0["adversarial"] == sum(o == "adversarial" for o in expected.values())
    assert round0["kept"] == sum(o in ("keep", "adversarial") for o in expected.values())


def test_the_ledger_records_who_decided_what_and_when(reviewed):
    work, decisions, computed = reviewed["work"], reviewed["decisions"], reviewed["computed"]
    recorded = {r[0]: r[1:] for r in rows(work, "SELECT proposal, computed, decided, note, reviewer, decided_at "
                                                "FROM cads_reviews WHERE round = 0")}
    assert set(recorded) == {pid for pid, o in computed.items() if o != "dropped"}  # every judged problem, once
    discarded = list(decisions)[0]
    assert recorded[discarded][:4] == ("keep", "discard", "the bars are mislabelled", "ann")
    assert all(r[3] == "ann" for r in recorded.values())
    unchanged = [pid for pid in recorded if pid not in decisions]
    assert all(recorded[pid][0] == recorded[pid][1] and recorded[pid][2] is None for pid in unchanged)
    when = datetime.fromisoformat(recorded[discarded][4])
    assert reviewed["before"] <= when <= datetime.utcnow()


def test_the_run_goes_on_to_the_next_pause_and_then_to_its_end(reviewed):
    work = reviewed["work"]
    assert "round 1 is waiting for review" in reviewed["reviewed"].stdout
    assert "waiting for review" in reviewed["second_pause_status"] and reviewed["second_pause"]["round"] == 1
    assert "Export with" in reviewed["accepted"].stdout and "is waiting for review" not in reviewed["accepted"].stdout
    s = stats("r", work)
    assert s["status"] == "done" and len(s["rounds"]) == 2
    # Accepting all records round 1 as computed, by the user running `cads review` (its default reviewer).
    round1 = rows(work, "SELECT computed, decided, reviewer FROM cads_reviews WHERE round = 1")
    assert round1 and all(c == d and who == getpass.getuser() for c, d, who in round1)


def test_lanes_are_reviewed_together(tmp_path):
    cads("run", review_config(tmp_path, rounds=1), "--run-id", "two", "--lanes", "2", cwd=tmp_path)
    assert "waiting for review" in status_line(tmp_path, "two")
    pauses = waiting(tmp_path, "two")
    assert [p["lane"] for p in pauses] == [0, 1]
    first = [p["id"] for p in pauses[0]["problems"] if p["outcome"] == "keep"][0]
    second = [p["id"] for p in pauses[1]["problems"] if p["outcome"] == "keep"][0]
    cads("review", "two", "--set", f"{first}=discard", "--set", f"{second}=discard", cwd=tmp_path)
    kept = {s["id"] for s in export("two", tmp_path)}
    assert kept and first not in kept and second not in kept
    assert stats("two", tmp_path)["status"] == "done"
    assert rows(tmp_path, "SELECT run, decided FROM cads_reviews WHERE proposal IN (?, ?)".replace("?", "'{}'").format(first, second)) \
        == [("two.lane0", "discard"), ("two.lane1", "discard")]


def test_a_bad_decision_is_refused_and_nothing_is_written(tmp_path):
    cads("run", review_config(tmp_path, rounds=1), "--run-id", "b", cwd=tmp_path)
    [pause] = waiting(tmp_path, "b")
    some = pause["problems"][0]["id"]

    def snapshot() -> tuple:
        return tuple(rows(tmp_path, f"SELECT count(*) FROM {table}")[0][0]
                     for table in ("cads_reviews", "cads_consensus", "cads_checkpoints", "cads_checkpoint_writes", "cads_calls"))

    before = snapshot()
    for args, named in [
        (["--set", f"{some}=maybe"], "'maybe'"),
        (["--set", "b/r0/nobody/9=keep"], "'b/r0/nobody/9'"),
        (["--set", "keep"], "'keep'"),
        (["--note", "b/r0/nobody/9=hmm"], "'b/r0/nobody/9'"),
        (["--accept-all", "--set", f"{some}=keep"], f"'{some}=keep'"),
        ([], "--accept-all"),  # no terminal to ask at, and nothing said
        (["--reviewer", "", "--accept-all"], "reviewer"),
    ]:
        refused = cads("review", "b", *args, cwd=tmp_path, check=False)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert len(refused.stderr.splitlines()) == 1 and named in refused.stderr, (args, refused.stderr)
        assert refused.stdout == ""
    assert snapshot() == before
    assert "waiting for review" in status_line(tmp_path, "b")
    # Waiting for a person is not something `cads resume` can answer; a run that is not waiting is not reviewed.
    resumed = cads("resume", "b", cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "cads review b" in resumed.stderr
    cads("review", "b", "--accept-all", cwd=tmp_path)
    again = cads("review", "b", "--accept-all", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "not waiting for review" in again.stderr
