"""A panel member whose server is down: the run fails at once, saying which agent and where; once a
server answers on that port, `cads resume` finishes it, and nothing finished before is paid again."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.panelist import Panelist
from tests.helpers import cads, export, stats


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(work: Path, base_url: str) -> str:
    config = {
        "rounds": 2,
        "target": 1000,
        "proposals_per_agent": 2,
        "seed": 4,
        "retry": {"attempts": 3, "base_delay": 0.01, "max_delay": 0.05},
        "panel": [
            {"name": "qwen", "provider": "openai", "model": "qwen2.5-vl", "base_url": base_url, "timeout": 5,
             "roles": ["proposer", "critic", "judge", "adversary"]},
            {"name": "vega", "provider": "sim", "model": "sim-strong", "roles": ["proposer", "critic", "judge"],
             "sim": {"skill": 0.6, "flaw_rate": 0.1}},
        ],
    }
    (work / "panel.yaml").write_text(yaml.safe_dump(config))
    return "panel.yaml"


def test_a_dead_endpoint_fails_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    port = _closed_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    panel = _config(tmp_path, base_url)

    down = cads("run", panel, "--run-id", "down", cwd=tmp_path, check=False)
    assert down.returncode == 1, down.stdout + down.stderr
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in down.stderr, down.stderr
    assert lines[0].startswith("error: run 'down' failed: agent 'qwen' cannot reach " + base_url)
    assert "unreachable: connection refused after 3 attempts" in lines[0] and "cads resume down" in lines[0]

    failed = stats("down", tmp_path)
    assert failed["status"] == "failed" and f"cannot reach {base_url}" in failed["reason"]
    assert failed["faults"]["unreachable"] >= 3  # the refused requests are in the ledger too
    listed = cads("runs", cwd=tmp_path).stdout
    assert "failed" in listed and "cannot reach" in listed

    with FakeOpenAI(Panelist(), port=port) as server:
        resumed = cads("resume", "down", cwd=tmp_path)
        requests = server.request_count
    assert "kept" in resumed.stdout
    done = stats("down", tmp_path)
    assert done["status"] == "done" and done["reason"] is None
    assert [r["round"] for r in done["rounds"]] == [0, 1] and done["kept"] > 0
    # Every request the server saw is in the ledger, beside the refused ones from before.
    answered = done["model_calls"] - failed["model_calls"]
    assert requests > 0 and answered >= requests
    samples = export("down", tmp_path)
    assert len(samples) == done["kept"] and {s["proposer"] for s in samples} <= {"qwen", "vega"}
