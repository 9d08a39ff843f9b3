"""LangGraph Studio for real: `langgraph dev` serves langgraph.json from a copy of the project with
its default settings, and the official client drives it; the CLI sees the same runs."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from langgraph_sdk import get_client

from cadsynth.store import thread_id

from tests.helpers import cads, cads_process, dev_server, export, free_port

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


@pytest.mark.slow  # the `langgraph dev` server
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
    assert "consensus: C=" in cads("show", thread, "--round", "1", cwd=project).stdout
    samples = export(thread, project)  # images from the server's default data folder
    assert len(samples) == stats["kept"] and all((project / f"{thread}-jsonl" / s["image"]).is_file() for s in samples)


@pytest.mark.slow  # the `langgraph dev` server
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


@pytest.mark.slow  # a second `cads` process
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
    # Another process: this one holds the run, and may advance it.
    resumed = cads_process("resume", "in-studio", "--db", db, cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "being advanced by another process" in resumed.stderr


@pytest.mark.slow  # the `langgraph dev` server
async def test_a_cli_run_opens_in_studio(studio):
    url, project = studio
    cads("run", "--run-id", "from-cli", "--rounds", "2", "--lanes", "2", cwd=project)
    shown = cads("studio", "from-cli", "--url", url, cwd=project).stdout.splitlines()
    threads = {line.split(": thread ")[0]: line.split(": thread ")[1] for line in shown}
    assert len(threads) == 2  # one thread per lane

    client = get_client(url=url)
    listed = await client.threads.search(metadata={"run": "from-cli"})
    assert {t["thread_id"] for t in listed} == set(threads.values())
    for lane, thread in threads.items():
        state = await client.threads.get_state(thread)
        assert state["values"]["run"] == lane and state["values"]["done"] is True
        history = await client.threads.get_history(thread, limit=100)
        # The round boundaries the CLI keeps: where round 1 opens is where Studio can fork it.
        assert any(h["next"] == ["open_round"] and h["values"].get("round") == 1 for h in history)


@pytest.mark.slow  # waits out the SDK's retries of a refused connection (8 s)
def test_opening_in_studio_needs_a_server(tmp_path):
    cads("run", "--run-id", "here", "--rounds", "1", cwd=tmp_path)
    nobody = f"http://127.0.0.1:{free_port()}"
    no_server = cads("studio", "here", "--url", nobody, cwd=tmp_path, check=False)
    assert no_server.returncode == 2 and nobody in no_server.stderr and "langgraph dev" in no_server.stderr


def test_opening_in_studio_needs_a_run(tmp_path):
    cads("run", "--run-id", "here", "--rounds", "1", cwd=tmp_path)
    no_run = cads("studio", "nowhere", "--url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, check=False)
    assert no_run.returncode == 2 and "no run 'nowhere'" in no_run.stderr


def test_a_database_from_before_uuid_threads_is_upgraded(tmp_path):
    """Schema 4 kept a CLI run's checkpoints under its name; upgrading moves them to its UUID thread."""
    cads("run", "--run-id", "old", "--rounds", "2", cwd=tmp_path)
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table in ("cads_checkpoints", "cads_checkpoint_blobs", "cads_checkpoint_writes"):
            db.execute(f"UPDATE {table} SET thread_id = 'old'")
        db.execute("UPDATE cads_schema SET version = 4")
    cads("replay", "old", "--round", "1", "--run-id", "fork", cwd=tmp_path)  # reads the parent's checkpoints
    assert json.loads(cads("stats", "fork", "--json", cwd=tmp_path).stdout)["status"] == "done"
    with sqlite3.connect(tmp_path / "cads.db") as db:
        threads = {row[0] for row in db.execute("SELECT DISTINCT thread_id FROM cads_checkpoints")}
    assert threads == {thread_id("old"), thread_id("fork")}


@pytest.mark.slow  # the `langgraph dev` server
async def test_a_review_answered_through_the_sdk(studio):
    """`review: true` in Studio: the round waits with its problems; a Command(resume=...) decides them."""
    url, project = studio
    client = get_client(url=url)
    thread = (await client.threads.create())["thread_id"]
    config = _config(rounds=1, target=1000, proposals_per_agent=3, review=True)
    await client.runs.wait(thread, "cads", input={"config": config})
    state = await client.threads.get_state(thread)
    [pause] = [i["value"] for task in state["tasks"] for i in task["interrupts"]]
    assert state["next"] == ["human_review"] and pause["reason"] == "review" and pause["round"] == 0
    assert json.loads(cads("stats", thread, "--json", cwd=project).stdout)["status"] == "waiting for review"
    kept = [p["id"] for p in pause["problems"] if p["outcome"] == "keep"]

    def reviews() -> list[tuple]:
        with sqlite3.connect(project / "cads.db") as db:
            return db.execute("SELECT proposal, decided, note, reviewer FROM cads_reviews WHERE run = ?", (thread,)).fetchall()

    # A bad answer is asked again, saying what was wrong; nothing is recorded.
    await client.runs.wait(thread, "cads", command={"resume": {"reviewer": "ann", "decisions": {kept[0]: {"outcome": "bin"}}}})
    state = await client.threads.get_state(thread)
    [again] = [i["value"] for task in state["tasks"] for i in task["interrupts"]]
    assert "'bin'" in again["error"] and kept[0] in again["error"] and reviews() == []

    decisions = {kept[0]: {"outcome": "discard", "note": "unreadable axis"}, kept[1]: {"outcome": "pool"}}
    await client.runs.wait(thread, "cads", command={"resume": {"reviewer": "ann", "decisions": decisions}})
    state = await client.threads.get_state(thread)
    assert state["values"]["done"] is True and state["next"] == []
    everything = {s["id"]: s["outcome"] for s in export(thread, project, "--include", "all")}
    assert everything[kept[0]] == "discard" and everything[kept[1]] == "adversarial"
    assert all(everything[pid] == p["outcome"] for p in pause["problems"] if (pid := p["id"]) not in decisions
               and p["outcome"] != "dropped")
    assert kept[0] not in {s["id"] for s in export(thread, project)}
    recorded = {r[0]: r[1:] for r in reviews()}
    assert recorded[kept[0]] == ("discard", "unreadable axis", "ann") and recorded[kept[1]] == ("adversarial", None, "ann")
    assert json.loads(cads("stats", thread, "--json", cwd=project).stdout)["status"] == "done"


@pytest.mark.slow  # the `langgraph dev` server
async def test_a_batch_wait_shows_in_studio_as_what_each_call_waits_on(studio):
    """A batching run in Studio: while its calls wait in provider batch jobs, the nodes' custom
    stream says which job and how far it is (a state, not a hang); the run then ends as online."""
    from cadsynth.fakes import FakeOpenAI
    from cadsynth.fakes.panelist import Panelist

    url, project = studio
    client = get_client(url=url)
    with FakeOpenAI(Panelist(), batch_delay=1.0) as server:  # a local server: no key
        config = _config(rounds=1, target=1000, proposals_per_agent=2, batch=True, batching={"gather": 0.2, "poll": 0.1})
        config["panel"] = [{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url,
                            "roles": ["proposer", "critic", "judge", "adversary"]}]
        thread = (await client.threads.create())["thread_id"]
        waits: list[dict] = []
        async for part in client.runs.stream(thread, "cads", input={"config": config}, stream_mode=["updates", "custom"]):
            assert part.event != "error", part.data
            if part.event == "custom" and "batch" in part.data:
                waits.append(part.data["batch"])
        routes = server.stats.snapshot()["by_route"]
    assert "chat.completions" not in routes and routes["batches.create"] >= 3  # every call went by batch
    said = [w["waiting"] for w in waits]
    assert any(line.startswith("waiting for batch job batch") and "(in_progress, " in line and "requests done" in line
               for line in said), said
    assert {w["run"] for w in waits} == {thread} and all(w["call"].startswith("r0/") for w in waits)
    state = await client.threads.get_state(thread)
    assert state["values"]["done"] is True
    assert json.loads(cads("stats", thread, "--json", cwd=project).stdout)["status"] == "done"
