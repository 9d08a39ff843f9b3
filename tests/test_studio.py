"""LangGraph Studio for real: `langgraph dev` serves langgraph.json from a copy of the project with
its default settings, and the official client drives it; the CLI sees the same runs."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from langgraph_sdk import get_client

from tests.helpers import cads, dev_server

ROOT = Path(__file__).resolve().parents[1]


def _config(**changes: object) -> dict:
    config = yaml.safe_load((ROOT / "cadsynth" / "default.yaml").read_text())
    return {**config, **changes}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The dev server's URL and the project copy it runs in (its cads.db is the default database)."""
    project = tmp_path_factory.mktemp("studio") / "project"
    with dev_server(ROOT, project) as url:
        yield url, project


async def test_a_whole_debate_through_the_dev_server(studio):
    url, project = studio
    client = get_client(url=url)
    thread = (await client.threads.create())["thread_id"]
    updates: list[str] = []
    async for part in client.runs.stream(thread, "cads", input={"config": _config(rounds=2, target=1000)},
                                         stream_mode="updates"):
        assert part.event != "error", part.data
        if part.event == "updates":
            updates += list(part.data)
    assert {"open_round", "problem", "consensus", "adversary"} <= set(updates)
    assert updates.count("adversary") == 2  # two rounds, each closed by the adversary

    state = await client.threads.get_state(thread)
    assert state["values"]["run"] == thread and state["values"]["done"] is True and state["next"] == []
    history = await client.threads.get_history(thread, limit=1000)
    assert {h["values"].get("round") for h in history} >= {0, 1}

    # The run the server made is in the project's default database, for the CLI.
    runs = cads("runs", cwd=project).stdout
    assert thread in runs and "done" in runs
    stats = json.loads(cads("stats", thread, "--json", cwd=project).stdout)
    assert stats["status"] == "done" and len(stats["rounds"]) == 2 and stats["kept"] > 0


async def test_a_studio_run_that_raises_is_failed(studio):
    url, project = studio
    client = get_client(url=url)
    config = _config(rounds=1)
    # A real provider whose key is not in the server's environment: the round cannot be asked.
    config["panel"][0] |= {"provider": "openai", "model": "gpt-4o", "api_key_env": "CADS_TEST_ABSENT_KEY"}
    thread = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread, "cads", input={"config": config})
    await client.runs.join(thread, run["run_id"])
    assert (await client.runs.get(thread, run["run_id"]))["status"] == "error"

    stats = json.loads(cads("stats", thread, "--json", cwd=project).stdout)
    assert stats["status"] == "failed" and "CADS_TEST_ABSENT_KEY" in stats["reason"]


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


async def test_a_studio_run_in_flight_shows_as_running(tmp_path, monkeypatch):
    """A run the server advances holds no CLI lease: the graph marks it as this process's."""
    db = f"sqlite:///{tmp_path / 'cads.db'}"
    monkeypatch.setenv("CADS_DB", db)
    monkeypatch.setenv("CADS_DATA", str(tmp_path / "data"))
    graph, checkpointer = _studio_module()
    assert graph.checkpointer is None  # the server brings its own
    async with checkpointer() as saver:
        served = graph.copy(update={"checkpointer": saver})
        await served.ainvoke({"config": _config()}, {"configurable": {"thread_id": "in-studio"}}, interrupt_before=["adversary"])
    # This process (standing in for the server) is alive and has not finished the run.
    stats = json.loads(cads("stats", "in-studio", "--json", "--db", db, cwd=tmp_path).stdout)
    assert stats["status"] == "running"
    resumed = cads("resume", "in-studio", "--db", db, cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "being advanced by another process" in resumed.stderr
