"""Provider batch jobs (`batch: true`, agents.batch) against the fake OpenAI-compatible servers' Batch API.

The same seeded panel runs online and in batch and must make the same data set, the batch run at
half the price; failures inside jobs are asked again and counted; `--detach` stops a run with its
jobs in flight and `cads resume` collects them; a server without a Batch API answers online.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.panelist import Panelist
from tests.helpers import cads, content, export, stats

KEYS = {"CADS_BATCH_KEY_A": "sk-batch-a-5Jq8Zt2Lw", "CADS_BATCH_KEY_B": "sk-batch-b-9Vx3Nr7Kp"}


def panel(a: str, b: str, *, batch: bool, **extra: Any) -> dict[str, Any]:
    """Two agents on two OpenAI-compatible servers, each with its own key and structured-output mode."""
    return {
        "rounds": 2, "target": 1000, "proposals_per_agent": 2, "seed": 3, "batch": batch,
        "batching": {"gather": 0.2, "poll": 0.05},
        "retry": {"attempts": 5, "base_delay": 0.02, "max_delay": 0.1},
        "panel": [
            {"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": a, "api_key_env": "CADS_BATCH_KEY_A",
             "roles": ["proposer", "critic", "judge", "adversary"]},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "base_url": b, "api_key_env": "CADS_BATCH_KEY_B",
             "structured_output": "function_calling", "roles": ["proposer", "critic", "judge"]},
        ],
        **extra,
    }


def servers(**batch: Any) -> tuple[FakeOpenAI, FakeOpenAI]:
    """Two fake servers sharing one brain (a judge on one answers a problem proposed on the other)."""
    brain = Panelist()
    return (FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_A"], **batch),
            FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_B"], **batch))


def start(work: Path, config: dict[str, Any], run: str, *extra: str) -> Any:
    work.mkdir(parents=True, exist_ok=True)
    (work / "panel.yaml").write_text(yaml.safe_dump(config))
    return cads("run", "panel.yaml", "--run-id", run, *extra, cwd=work, env=KEYS)


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The panel's data set and cost, online."""
    work = tmp_path_factory.mktemp("online")
    a, b = servers()
    with a, b:
        start(work, panel(a.base_url, b.base_url, batch=False), "online")
    return {"samples": content(export("online", work)), "stats": stats("online", work)}


def test_a_batch_run_makes_the_same_data_set_at_half_the_price(online: dict[str, Any], tmp_path: Path) -> None:
    a, b = servers()
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True), "batched")
        routes = [a.stats.snapshot()["by_route"], b.stats.snapshot()["by_route"]]
        lines = a.batch_lines + b.batch_lines
    s = stats("batched", tmp_path)
    assert s["status"] == "done" and content(export("batched", tmp_path)) == online["samples"]
    assert all("chat.completions" not in r and r["batches.create"] >= 3 for r in routes)  # every call went by batch
    assert s["cost"]["batch_calls"] == s["model_calls"] == len(lines) == online["stats"]["model_calls"]
    assert s["cost"]["usd"] <= 0.52 * online["stats"]["cost"]["usd"]
    assert s["cost"]["batch_usd"] == s["cost"]["usd"] and s["cost"]["online_usd"] == pytest.approx(online["stats"]["cost"]["usd"], abs=1e-5)
    assert len({line.custom_id for line in lines}) == len(lines)  # no request was sent twice
    assert s["batch"]["jobs"] == sum(r["batches.create"] for r in routes) and s["batch"]["jobs_open"] == 0


def test_lanes_share_jobs_and_stats_count_each_job_once(tmp_path: Path) -> None:
    a, b = servers()
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True, lanes=2, rounds=1), "laned")
        created = a.stats.snapshot()["by_route"]["batches.create"] + b.stats.snapshot()["by_route"]["batches.create"]
        lines = a.batch_lines + b.batch_lines
    s = stats("laned", tmp_path)
    assert s["status"] == "done" and s["batch"]["jobs"] == created and s["batch"]["requests_answered"] == len(lines)
    with sqlite3.connect(tmp_path / "cads.db") as db:
        shared = db.execute("SELECT count(*) FROM (SELECT job FROM cads_batch_requests GROUP BY job HAVING count(DISTINCT run) = 2)").fetchone()[0]
    assert shared > 0  # a phase's calls of both lanes went in one job


def test_failures_inside_jobs_are_asked_again_and_counted(tmp_path: Path) -> None:
    a, b = servers(batch_error_rate=0.10, batch_expiry_rate=0.05, batch_seed=7)
    a.batch_outcomes.append("failed")  # the first job to the first server fails whole
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True), "faulty")
        lines = a.batch_lines + b.batch_lines
    s = stats("faulty", tmp_path)
    outcomes = Counter(line.outcome for line in lines)
    assert outcomes["failed"] > 0 and outcomes["errored"] > 0 and outcomes["expired"] > 0
    # Every request was answered in the end: its last line in a job is an answer.
    last = {line.custom_id: line.outcome for line in lines}
    assert set(last.values()) == {"answered"} and s["status"] == "done" and s["kept"] > 0
    faults = s["faults"]
    assert faults["expired"] == outcomes["expired"] + outcomes["failed"]  # lost in a job, or with their job
    assert faults["server_error"] == outcomes["errored"]
    assert faults["retried"] == outcomes["expired"] + outcomes["failed"] + outcomes["errored"]
    assert faults["dropped"] == faults["abstained"] == 0
    assert s["batch"]["jobs_failed"] == 1 and s["batch"]["requests_lost"] == outcomes["expired"] + outcomes["failed"]
    assert s["batch"]["requests_errored"] == outcomes["errored"]


@pytest.mark.slow
def test_a_detached_run_waits_for_batch_and_resume_collects_it(online: dict[str, Any], tmp_path: Path) -> None:
    a, b = servers(batch_delay=0.5)
    with a, b:
        first = start(tmp_path, panel(a.base_url, b.base_url, batch=False), "away", "--batch", "--detach")
        assert "cads resume away" in first.stdout
        listed = cads("runs", cwd=tmp_path).stdout
        assert "waiting for batch" in listed and "batch-fake" in listed
        shown = cads("show", "away", cwd=tmp_path).stdout
        assert "waiting for batch" in shown and "batch job" in shown
        created = a.stats.snapshot()["by_route"]["batches.create"] + b.stats.snapshot()["by_route"]["batches.create"]
        # A resume that detaches again collects what is done and sends the next phase.
        for _ in range(20):
            cads("resume", "away", "--detach", cwd=tmp_path, env=KEYS)
            if stats("away", tmp_path)["status"] == "done":
                break
        lines = a.batch_lines + b.batch_lines
    s = stats("away", tmp_path)
    assert s["status"] == "done" and content(export("away", tmp_path)) == online["samples"]
    assert len(lines) > created and len({line.custom_id for line in lines}) == len(lines)  # none sent twice
    assert s["cost"]["usd"] <= 0.52 * online["stats"]["cost"]["usd"]


def test_a_server_without_a_batch_api_answers_online_in_a_batch_run(online: dict[str, Any], tmp_path: Path) -> None:
    brain = Panelist()
    a = FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_A"])
    b = FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_B"], batches=False)  # a vLLM server, say
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True), "mixed")
        routes = a.stats.snapshot()["by_route"], b.stats.snapshot()["by_route"]
    s = stats("mixed", tmp_path)
    assert content(export("mixed", tmp_path)) == online["samples"]
    assert "chat.completions" not in routes[0] and routes[1]["chat.completions"] == s["cost"]["by_agent"]["mini"]["calls"]
    assert s["cost"]["batch_usd"] == pytest.approx(s["cost"]["by_agent"]["gpt"]["usd"], abs=1e-5)


def test_keys_are_never_stored(tmp_path: Path) -> None:
    a, b = servers()
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True), "sealed")
    found = [p for p in tmp_path.rglob("*") if p.is_file() and any(k.encode() in p.read_bytes() for k in KEYS.values())]
    assert found == []
    with sqlite3.connect(tmp_path / "cads.db") as db:
        jobs = db.execute("SELECT provider_id, state FROM cads_batch_jobs").fetchall()
    assert jobs and all(pid.startswith("batch-fake") and state == "collected" for pid, state in jobs)


# --- killed at any moment, nothing is paid twice ------------------------------------------------


def _count(db: Path, sql: str, *args: Any) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql, args).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the tables do not exist yet


@pytest.mark.slow
def test_a_batch_run_killed_at_five_moments_resumes_to_the_same_data_set(online: dict[str, Any], tmp_path: Path) -> None:
    """SIGKILL between a job's creation and its record, between its record and its first poll, and
    while its answers are read; resumed each time, the run makes the online data set, and no request
    reached a job twice."""
    import os
    import random
    import signal
    import subprocess
    import time

    from tests.helpers import CADS

    a, b = servers(batch_delay=0.6)
    fakes = (a, b)
    db = tmp_path / "cads.db"

    def sent() -> int:
        return len(a.batch_lines) + len(b.batch_lines)

    def downloads() -> int:
        return sum(f.stats.snapshot()["by_route"].get("files.content", 0) for f in fakes)

    def kill_at(moment: str, args: list[str]) -> None:
        lines, read, started = sent(), downloads(), time.time()
        for f in fakes:  # widen the moment so that the kill lands in it
            f.batch_create_delay = 0.5 if moment == "created, not recorded" else 0.0
            f.file_content_delay = 0.5 if moment == "collecting" else 0.0
        reached = {
            "created, not recorded": lambda: sent() > lines,
            "recorded, not polled": lambda: _count(
                db, "SELECT count(*) FROM cads_batch_jobs WHERE provider_id IS NOT NULL AND state IN "
                "('submitted', 'validating') AND created_at > ?", started) > 0,
            "collecting": lambda: downloads() > read,
        }[moment]
        proc = subprocess.Popen([*CADS, *args], cwd=tmp_path, env={**os.environ, **KEYS, "COLUMNS": "200"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120  # a guard against a kill point never reached, not a timing
        while not reached():
            if proc.poll() is not None:
                raise AssertionError(f"cads {args} ended before the kill point {moment!r}: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"kill point {moment!r} never reached"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]

    rng = random.Random(23)
    moments = ["created, not recorded", "recorded, not polled", "collecting"]
    moments += rng.choices(moments, k=2)
    rng.shuffle(moments)
    with a, b:
        (tmp_path / "panel.yaml").write_text(yaml.safe_dump(panel(a.base_url, b.base_url, batch=True)))
        kill_at(moments[0], ["run", "panel.yaml", "--run-id", "killed"])
        for moment in moments[1:]:
            kill_at(moment, ["resume", "killed"])
        for f in fakes:
            f.batch_create_delay = f.file_content_delay = 0.0
        cads("resume", "killed", cwd=tmp_path, env=KEYS)
        lines = a.batch_lines + b.batch_lines
    with sqlite3.connect(db) as conn:
        recorded = {pid for (pid,) in conn.execute("SELECT provider_id FROM cads_batch_jobs WHERE provider_id IS NOT NULL")}
    assert recorded == {line.batch for line in lines}  # every job a provider made is in the store (found again if need be)
    s = stats("killed", tmp_path)
    assert s["status"] == "done" and content(export("killed", tmp_path)) == online["samples"]
    repeated = [cid for cid, n in Counter(line.custom_id for line in lines).items() if n > 1]
    assert repeated == []  # the fakes' logs: no request was submitted twice
    assert s["cost"]["usd"] <= 0.52 * online["stats"]["cost"]["usd"]
    assert s["model_calls"] == online["stats"]["model_calls"]  # each paid request recorded once


# --- before a run: the dry run's two prices, bad options, an older database -----------------------


def test_the_dry_run_prices_a_batch_run_at_half(tmp_path: Path) -> None:
    config = panel("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", batch=False)
    (tmp_path / "panel.yaml").write_text(yaml.safe_dump(config))
    out = cads("run", "panel.yaml", "--dry-run", "--batch", cwd=tmp_path).stdout
    total = next(line for line in out.splitlines() if "total" in line).split("│")
    online_usd, batch_usd = float(total[-3]), float(total[-2])
    assert "USD in batch" in out and online_usd > 0 and batch_usd == pytest.approx(online_usd / 2, abs=2e-4)
    assert not (tmp_path / "cads.db").exists()


def test_detach_without_batch_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = cads("run", "--detach", cwd=tmp_path, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--detach" in result.stderr and "--batch" in result.stderr
    assert not (tmp_path / "cads.db").exists()


def test_a_version_12_database_gains_the_batch_columns_and_tables(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    from cadsynth.store import schema as t
    from cadsynth.store.migrate import ensure_schema

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        ensure_schema(conn)
        for column in ("batch", "online_cost_usd"):
            conn.exec_driver_sql(f"ALTER TABLE cads_calls DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE cads_batch_requests")
        conn.exec_driver_sql("DROP TABLE cads_batch_jobs")
        conn.exec_driver_sql("UPDATE cads_schema SET version = 12")
    with engine.begin() as conn:
        ensure_schema(conn)
        layout = inspect(conn)
        columns = {c["name"] for c in layout.get_columns("cads_calls")}
        version = conn.exec_driver_sql("SELECT version FROM cads_schema").scalar()
        tables = set(layout.get_table_names())
    engine.dispose()
    assert {"batch", "online_cost_usd"} <= columns and version == t.SCHEMA_VERSION
    assert {"cads_batch_jobs", "cads_batch_requests"} <= tables


# --- the store of jobs, on both backends; the online fallback --------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "empty_pg_url"))


def test_the_job_store_keeps_a_job_from_before_it_is_sent_to_its_answers(db_url: str) -> None:
    import asyncio

    from cadsynth.store.batches import BatchStore
    from cadsynth.store.db import async_engine

    where = {"provider": "openai", "endpoint": "http://127.0.0.1:9/v1", "model": "gpt-4o"}

    async def go() -> dict[str, Any]:
        engine = async_engine(db_url)
        store = BatchStore(engine)
        try:
            keys = [("r", "k1"), ("r", "k2"), ("r.lane1", "k1")]
            await store.add_job({"id": "j1", **where, "requests": 3, "bytes": 300}, keys)
            await store.add_job({"id": "j1", **where, "requests": 3, "bytes": 300}, keys)  # asked again: the same
            seen = {"preparing": await store.open_jobs(**where)}
            await store.set_job("j1", provider_id="batch_1", state="submitted")
            seen["waiting"] = await store.waiting_jobs(["r"])
            await store.collect("j1", "collected", {
                ("r", "k1"): {"state": "answered", "status": 200, "response": {"id": "a"}, "reason": None},
                ("r", "k2"): {"state": "lost", "status": None, "response": None, "reason": "expired"},
                ("r.lane1", "k1"): {"state": "errored", "status": 500, "response": {"error": {}}, "reason": None},
            })
            seen["answers"] = await store.answers("r", ["k1", "k2"])
            seen["lane"] = await store.answers("r.lane1", ["k1"])
            seen["open"] = await store.open_jobs(**where)
            seen["totals"] = await store.totals(["r", "r.lane1"])
            return seen
        finally:
            await engine.dispose()

    seen = asyncio.run(go())
    [job] = seen["preparing"]
    assert job["state"] == "preparing" and job["provider_id"] is None and sorted(job["keys"]) == sorted([("r", "k1"), ("r", "k2"), ("r.lane1", "k1")])
    assert [(j["provider_id"], j["requests"]) for j in seen["waiting"]] == [("batch_1", 3)]
    assert seen["answers"] == {"k1": {"status": 200, "response": {"id": "a"}}}  # only an answer: the others go again
    assert seen["lane"] == {} and seen["open"] == []
    assert seen["totals"] == {"jobs": 1, "jobs_failed": 0, "jobs_open": 0, "requests_answered": 1, "requests_errored": 1, "requests_lost": 1}


def test_with_the_online_fallback_a_request_a_job_lost_is_asked_online(tmp_path: Path) -> None:
    a, b = servers(batch_error_rate=0.15, batch_expiry_rate=0.10, batch_seed=3)
    with a, b:
        start(tmp_path, panel(a.base_url, b.base_url, batch=True, batch_fallback="online"), "fallback")
        lines = a.batch_lines + b.batch_lines
        online_requests = sum(f.stats.snapshot()["by_route"].get("chat.completions", 0) for f in (a, b))
    s = stats("fallback", tmp_path)
    failed = sum(line.outcome in ("errored", "expired") for line in lines)
    assert failed > 0 and online_requests == failed  # each went online once, and no request went in a job twice
    assert len({line.custom_id for line in lines}) == len(lines)
    assert s["status"] == "done" and s["cost"]["batch_calls"] == len(lines)
    assert s["faults"]["expired"] + s["faults"]["server_error"] == failed == s["faults"]["retried"]


@pytest.mark.slow
def test_a_waiting_run_says_how_many_requests_its_jobs_have_done(tmp_path: Path) -> None:
    """What the progress display shows while the run waits on its jobs (`cads run` in this process)."""
    import re
    import threading
    import time

    from cadsynth.agents import batch

    a, b = servers(batch_delay=0.6)
    seen: list[str] = []
    with a, b:
        config = panel(a.base_url, b.base_url, batch=True, rounds=1)
        run = threading.Thread(target=start, args=(tmp_path, config, "shown"))
        run.start()
        while run.is_alive():
            line = batch.waiting()
            if line and line not in seen:
                seen.append(line)
            time.sleep(0.02)
        run.join()
    assert stats("shown", tmp_path)["status"] == "done"
    assert seen and all(re.fullmatch(r"waiting for \d+ batch jobs?: [\d,]+ of [\d,]+ requests done", line) for line in seen)
    assert any(not line.startswith("waiting for 1 ") for line in seen)  # both servers' jobs at once
    assert any(re.search(r": [1-9][\d,]* of", line) for line in seen)  # polled progress shows


# --- two providers: OpenAI's Batch API and Gemini's batch mode --------------------------------------

GEMINI_KEY = {"CADS_BATCH_KEY_G": "g-batch-3Hf6Wq1Ys"}


def two_providers(openai: str, gemini: str, *, batch: bool, **extra: Any) -> dict[str, Any]:
    config = panel(openai, openai, batch=batch, **extra)
    config["panel"][1] = {"name": "gem", "provider": "google", "model": "gemini-2.5-flash", "base_url": gemini,
                          "api_key_env": "CADS_BATCH_KEY_G", "structured_output": "function_calling",
                          "roles": ["proposer", "critic", "judge"]}
    return config


def test_openai_and_gemini_batch_jobs_make_the_online_data_set_at_half_the_price(tmp_path: Path) -> None:
    from cadsynth.fakes import FakeGemini

    found = {}
    for mode in ("online", "batch"):
        brain = Panelist()
        with FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_A"]) as a, FakeGemini(brain, api_key=GEMINI_KEY["CADS_BATCH_KEY_G"]) as g:
            work = tmp_path / mode
            work.mkdir()
            (work / "panel.yaml").write_text(yaml.safe_dump(two_providers(a.base_url, g.base_url, batch=mode == "batch")))
            cads("run", "panel.yaml", "--run-id", mode, cwd=work, env={**KEYS, **GEMINI_KEY})
            found[mode] = (content(export(mode, work)), stats(mode, work), a.stats.snapshot()["by_route"],
                           g.stats.snapshot()["by_route"], a.batch_lines + g.batch_lines)
    online, batch = found["online"], found["batch"]
    assert batch[0] == online[0] and batch[1]["status"] == "done"
    assert "chat.completions" not in batch[2] and "generateContent" not in batch[3]  # every call went by batch
    assert batch[2]["batches.create"] >= 3 and batch[3]["batches.create"] >= 3
    assert batch[1]["cost"]["usd"] <= 0.52 * online[1]["cost"]["usd"]
    lines = batch[4]
    assert batch[1]["model_calls"] == len(lines) == online[1]["model_calls"]
    assert len({line.custom_id for line in lines}) == len(lines)


def test_gemini_requests_that_errored_or_whose_job_failed_are_asked_again_and_counted(tmp_path: Path) -> None:
    from cadsynth.fakes import FakeGemini

    brain = Panelist()
    with FakeOpenAI(brain, api_key=KEYS["CADS_BATCH_KEY_A"]) as a, \
            FakeGemini(brain, api_key=GEMINI_KEY["CADS_BATCH_KEY_G"], batch_error_rate=0.15, batch_seed=4) as g:
        g.batch_outcomes.append("failed")
        (tmp_path / "panel.yaml").write_text(yaml.safe_dump(two_providers(a.base_url, g.base_url, batch=True)))
        cads("run", "panel.yaml", "--run-id", "gfaults", cwd=tmp_path, env={**KEYS, **GEMINI_KEY})
        lines = list(g.batch_lines)
    s = stats("gfaults", tmp_path)
    outcomes = Counter(line.outcome for line in lines)
    assert outcomes["failed"] > 0 and outcomes["errored"] > 0
    assert set({line.custom_id: line.outcome for line in lines}.values()) == {"answered"} and s["status"] == "done"
    assert s["faults"]["expired"] == outcomes["failed"] and s["faults"]["server_error"] == outcomes["errored"]
    assert s["faults"]["dropped"] == s["faults"]["abstained"] == 0


def test_a_gemini_job_beyond_the_inline_limit_travels_as_an_input_file(tmp_path: Path) -> None:
    """Over 20 MB of inline requests the Gemini API wants an input file: the job is uploaded with the
    Files API's resumable protocol and read back from its responses file, with the answers the same
    requests get inline. (The limit is lowered on the provider object so a small job crosses it.)"""
    import asyncio

    from cadsynth.agents.batch_providers import GeminiBatches
    from cadsynth.config import AgentConfig
    from cadsynth.fakes import FakeGemini

    def body(i: int) -> dict[str, Any]:
        return {"contents": [{"role": "user", "parts": [{"text": f"Say the number {i} and a word."}]}],
                "generationConfig": {"temperature": 0}}

    async def answers(provider: GeminiBatches, job: str) -> dict[str, Any]:
        data = b"".join(provider.line(f"k{i}", body(i)) for i in range(5))
        name = await provider.submit(job, data)
        assert await provider.find(job, 0.0) == name  # found again by the job's id, as after a kill
        polled = await provider.poll(name)
        while polled.open:
            await asyncio.sleep(0.02)
            polled = await provider.poll(name)
        found = await provider.answers(polled)
        await provider.close()
        return {key: (a.status, a.body) for key, a in found.items()}

    with FakeGemini(api_key=GEMINI_KEY["CADS_BATCH_KEY_G"], batch_delay=0.1) as g, pytest.MonkeyPatch.context() as env:
        env.setenv("CADS_BATCH_KEY_G", GEMINI_KEY["CADS_BATCH_KEY_G"])
        agent = AgentConfig(name="gem", provider="google", model="gemini-2.5-flash", api_key_env="CADS_BATCH_KEY_G",
                            roles=["judge"], base_url=g.base_url)
        inline = asyncio.run(answers(GeminiBatches(agent), "job-inline"))
        by_file = GeminiBatches(agent)
        by_file.INLINE_BYTES = 100
        from_file = asyncio.run(answers(by_file, "job-file"))
        routes = g.stats.snapshot()["by_route"]
        uploaded = [bytes(v) for k, v in g.files.items() if not k.endswith("-responses")]
    assert set(inline) == set(from_file) == {f"k{i}" for i in range(5)}
    assert all(status == 200 for status, _ in from_file.values())
    assert from_file == inline  # the same requests, the same answers, by either road
    assert routes["files.upload"] >= 2 and routes["files.download"] == 1 and routes["batches.create"] == 2
    assert len(uploaded) == 1 and [json.loads(x)["key"] for x in uploaded[0].splitlines()] == [f"k{i}" for i in range(5)]
