"""The LangGraph server's view: langgraph.json's graph and checkpointer see the CLI's runs and vice versa."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from tests.helpers import cads

ROOT = Path(__file__).resolve().parents[1]


def _studio_module():
    """Load the entry file by path, as `langgraph dev` does with langgraph.json's entries."""
    spec = json.loads((ROOT / "langgraph.json").read_text())
    graph_path, graph_attr = spec["graphs"]["cads"].split(":")
    cp_path, cp_attr = spec["checkpointer"]["path"].split(":")
    assert graph_path == cp_path
    loader = importlib.util.spec_from_file_location("studio_entry", ROOT / graph_path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return getattr(module, graph_attr), getattr(module, cp_attr)


async def test_studio_and_cli_share_runs(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'cads.db'}"
    monkeypatch.setenv("CADS_DB", db)
    monkeypatch.setenv("CADS_DATA", str(tmp_path / "data"))
    graph, checkpointer = _studio_module()
    assert graph.checkpointer is None  # the server brings its own

    config = yaml.safe_load((ROOT / "cadsynth" / "default.yaml").read_text())
    config.update(rounds=2, target=1000)
    async with checkpointer() as saver:
        served = graph.copy(update={"checkpointer": saver})
        thread = {"configurable": {"thread_id": "from-studio"}}
        final = await served.ainvoke({"config": config}, thread)
        assert final["done"] and final["run"] == "from-studio"

    # The CLI sees the Studio run ...
    stats = json.loads(cads("stats", "from-studio", "--json", "--db", db, cwd=tmp_path).stdout)
    assert stats["status"] == "done" and len(stats["rounds"]) == 2 and stats["kept"] > 0
    # ... and Studio sees a CLI run's state.
    cads("run", "--run-id", "from-cli", "--rounds", "1", "--db", db, "--data", str(tmp_path / "data"), cwd=tmp_path)
    async with checkpointer() as saver:
        state = await graph.copy(update={"checkpointer": saver}).aget_state({"configurable": {"thread_id": "from-cli"}})
    assert state.values["run"] == "from-cli" and state.values["done"] is True


async def test_a_studio_run_in_flight_shows_as_running(tmp_path, monkeypatch):
    """A run the server advances holds no CLI lease: the graph marks it as this process's."""
    db = f"sqlite:///{tmp_path / 'cads.db'}"
    monkeypatch.setenv("CADS_DB", db)
    monkeypatch.setenv("CADS_DATA", str(tmp_path / "data"))
    graph, checkpointer = _studio_module()
    config = yaml.safe_load((ROOT / "cadsynth" / "default.yaml").read_text())
    async with checkpointer() as saver:
        served = graph.copy(update={"checkpointer": saver})
        await served.ainvoke({"config": config}, {"configurable": {"thread_id": "in-studio"}}, interrupt_before=["adversary"])
    # This process (standing in for the server) is alive and has not finished the run.
    stats = json.loads(cads("stats", "in-studio", "--json", "--db", db, cwd=tmp_path).stdout)
    assert stats["status"] == "running"
    resumed = cads("resume", "in-studio", "--db", db, cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "being advanced by another process" in resumed.stderr
