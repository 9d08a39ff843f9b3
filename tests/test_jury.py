"""The adaptive jury: the same outcomes as the full jury, for fewer judge calls (simulated panel)."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import yaml

from tests.helpers import cads, content, export, stats


def _panel(work: Path, jury: str) -> str:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(jury=jury, rounds=6, target=1000, seed=11)
    (work / f"{jury}.yaml").write_text(yaml.safe_dump(config))
    return f"{jury}.yaml"


def test_an_adaptive_jury_keeps_the_same_data_for_fewer_judge_calls(tmp_path: Path) -> None:
    for jury in ("full", "adaptive"):
        cads("run", _panel(tmp_path, jury), "--run-id", jury, cwd=tmp_path)
    full, adaptive = export("full", tmp_path), export("adaptive", tmp_path)
    # Every outcome is the full jury's: the adaptive one stops only when the rest cannot change it.
    assert [(s["question"], s["outcome"]) for s in adaptive] == [(s["question"], s["outcome"]) for s in full]
    assert stats("adaptive", tmp_path)["truth"] == stats("full", tmp_path)["truth"]
    assert {s["asked"] for s in full} == {4}
    early = [s for s in adaptive if s["asked"] < 4]
    assert early and all(s["outcome"] == "adversarial" for s in early)  # only a split settles early
    unsettled = {"consensus": None, "judges": None, "rationales": None, "answers": None}
    assert content([{**s, **unsettled, "asked": 4} for s in adaptive]) == content([{**s, **unsettled} for s in full])
    # The judges it did ask answered as they did in the full jury.
    assert all(a in f["answers"] for s, f in zip(adaptive, full) for a in s["answers"])
    with sqlite3.connect(tmp_path / "cads.db") as db:
        calls = dict(db.execute("SELECT run, count(*) FROM cads_calls WHERE role = 'judge' GROUP BY run").fetchall())
        unasked = db.execute(
            "SELECT count(*) FROM cads_consensus WHERE run = 'adaptive' AND json_array_length(json_extract(record, '$.unasked')) > 0"
        ).fetchone()[0]
    assert calls["adaptive"] <= 0.85 * calls["full"]
    assert unasked == len(early)  # the judges it did not ask are recorded with the consensus
