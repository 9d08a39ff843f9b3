"""STaR's rationalization (`rationalize: true`): judges that missed a split problem write reasoning
that reaches the reference, kept as marked training rationales, never as votes (simulated panel)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from tests.helpers import cads, export, stats


def _config(work: Path, rationalize: bool) -> str:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(rationalize=rationalize, rounds=3, seed=4)
    name = f"rationalize-{rationalize}.yaml"
    (work / name).write_text(yaml.safe_dump(config))
    return name


def test_judges_that_missed_a_split_write_marked_rationales_that_change_no_outcome(tmp_path: Path) -> None:
    for rationalize in (False, True):
        cads("run", _config(tmp_path, rationalize), "--run-id", f"star-{rationalize}", cwd=tmp_path)
    plain, star = export("star-False", tmp_path), export("star-True", tmp_path)
    # The rationalizations come after the verdicts: the data set and every answer are the same.
    assert [(s["question"], s["outcome"], s["answers"]) for s in star] == [
        (s["question"], s["outcome"], s["answers"]) for s in plain
    ]
    made = 0
    for sample in star:
        rationalized = [r for r in sample["rationales"] if r["rationalized"]]
        missed = {a["judge"] for a in sample["answers"] if not a["agrees"] and not a["abstained"]}
        if sample["outcome"] != "adversarial":
            assert not rationalized
            continue
        # One from each judge that missed it, after the blind rationales, each reaching the reference.
        assert {r["by"] for r in rationalized} == missed
        if rationalized:
            assert sample["rationales"][-len(rationalized):] == rationalized
        assert all(sample["answer"] in r["text"] for r in rationalized)
        made += len(rationalized)
    assert made > 0
    by_role = stats("star-True", tmp_path)["cost"]["by_role"]
    assert by_role["rationalizer"]["calls"] == made  # paid for and counted like any other call
    assert "rationalizer" not in stats("star-False", tmp_path)["cost"]["by_role"]
