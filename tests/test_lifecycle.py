"""A run's lifecycle seen from every view: a run with lanes reads its status from its lanes', so when
one lane fails the run is failed, with that lane's reason, in `runs`, `show`, `stats` and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.http import HttpError
from cadsynth.fakes.openai_base import oai_error
from cadsynth.fakes.panelist import Panelist
from cadsynth.fakes.responders import request_text
from tests.helpers import cads

MARKER = "lighthouse keepers"  # only lane 2's seed names it


def test_a_failed_lane_fails_its_run_and_every_view_says_so(tmp_path: Path) -> None:
    panelist = Panelist()

    def answer(body: dict[str, Any]) -> Any:
        if MARKER in request_text(body):  # a key the provider refuses, for lane 2's requests alone
            raise HttpError(401, oai_error("Incorrect API key provided", type_="invalid_request_error", code="invalid_api_key"))
        return panelist(body)

    # Lane i draws its seeds from every 4th line starting at line i: lane 2 gets the marker's seed.
    seeds = ["counting fruit in baskets", "bus timetables", f"a census of {MARKER}", "rainfall by month"]
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"id": f"s{i}", "task": f"Make a chart about {s}."}) + "\n" for i, s in enumerate(seeds)))
    with FakeOpenAI(answer) as server:
        agent = {"provider": "openai", "model": "gpt-4o", "base_url": server.base_url, "timeout": 5.0}
        config = {
            "rounds": 2, "target": 1000, "lanes": 4, "seed": 1, "seeds": "seeds.jsonl", "proposals_per_agent": 1,
            "panel": [
                {"name": "gpt", "roles": ["proposer", "critic", "judge", "adversary"], **agent},
                {"name": "mini", "roles": ["proposer", "judge"], **agent, "model": "gpt-4o-mini"},
            ],
        }
        (tmp_path / "lanes.yaml").write_text(yaml.safe_dump(config))
        run = cads("run", "lanes.yaml", "--run-id", "four", cwd=tmp_path, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    reason = "lane four.lane2: "
    assert reason in run.stderr

    listed = cads("runs", cwd=tmp_path).stdout
    row = next(line for line in listed.splitlines() if re.search(r"\bfour\b", line))
    assert "failed" in row
    shown = cads("show", "four", cwd=tmp_path).stdout
    assert "status failed" in shown and reason in shown
    stats = json.loads(cads("stats", "four", "--json", cwd=tmp_path).stdout)
    assert stats["status"] == "failed" and stats["reason"].startswith(reason)
    lanes = {lane["run"]: lane["status"] for lane in stats["lanes"]}
    assert lanes["four.lane2"] == "failed" and "failed" not in {s for r, s in lanes.items() if r != "four.lane2"}
    cads("report", "four", "--out", "four.html", cwd=tmp_path)
    page = (tmp_path / "four.html").read_text()
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert blob is not None
    data = json.loads(blob.group(1).replace("<\\/", "</"))
    assert data["status"] == "failed" and data["reason"] == stats["reason"]
