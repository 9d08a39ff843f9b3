"""Helpers the tests share: drive `cads` as a user would (in this process, or as a process where one
is what a test is about), and read back what it made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

CADS = [sys.executable, "-m", "cadsynth.cli"]
# What a test's `cads` does not inherit from the environment the suite runs in.
HIDDEN = ("CADS_DB", "CADS_DATA", "OPENAI_API_KEY", "GOOGLE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def cads(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cads *args` in this process as a `cads` started in `cwd` would run, without the caller's
    CADS_DB, CADS_DATA or API keys (plus `env`): its stdout and stderr apart, and the exit status
    the console script would end with (`cadsynth.cli.invoke` is the script minus its exit).

    The working directory and the environment are set for the call and restored after it. A test
    that needs a process of its own (a kill, a signal, Ray, startup) uses `cads_process`.
    """
    import click.formatting
    from typer.testing import CliRunner

    from cadsynth.cli import invoke

    changes: dict[str, str | None] = {var: None for var in HIDDEN} | {"COLUMNS": "200"} | dict(env or {})
    here = os.getcwd()
    with CliRunner().isolation(env=changes) as (out, err, _):
        click.formatting.FORCED_WIDTH = None  # help wraps to the terminal's width, as in a process
        os.chdir(cwd)
        try:
            code = _in_a_thread_if_async(invoke, list(args))
        except SystemExit as exc:  # only a bug exits past invoke; its status as the process's
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(here)
            sys.stdout.flush()
            sys.stderr.flush()
        result = subprocess.CompletedProcess([*CADS, *args], code, out.getvalue().decode(), err.getvalue().decode())
    if check and result.returncode != 0:
        raise AssertionError(f"cads {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _in_a_thread_if_async(command: Callable[[list[str]], int], args: list[str]) -> int:
    """`command(args)` here; in a thread of its own when an async test calls (the command's
    asyncio.run cannot start inside the test's running loop, which waits as it would on a process)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return command(args)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(command, args).result()


def cads_process(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`cads` as a process of its own, in `cwd`, with the same environment as `cads` gives a command."""
    full = {**os.environ, "COLUMNS": "200"}
    for var in HIDDEN:
        full.pop(var, None)
    full.update(env or {})
    result = subprocess.run([*CADS, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"cads {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def store_of(run_folder: Path) -> list[str]:
    """The --db and --data options naming the store a run made in `run_folder`."""
    return ["--db", f"sqlite:///{run_folder / 'cads.db'}", "--data", str(run_folder / "cads-data")]


def stats(run: str, cwd: Path, *extra: str) -> dict:
    return json.loads(cads("stats", run, "--json", *extra, cwd=cwd).stdout)


def export(run: str, cwd: Path, *extra: str) -> list[dict]:
    """Export a run as JSONL into the folder `<run>-jsonl` (again, if it was) and read its samples back."""
    out = cwd / f"{run}-jsonl"
    cads("export", run, "--out", str(out), "--overwrite", *extra, cwd=cwd)
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def content(samples: list[dict]) -> list[dict]:
    """A data set without what differs between equal runs (run ids)."""
    return [
        {**{k: v for k, v in s.items() if k not in ("id", "run", "image")}, "image": Path(s["image"]).name}
        for s in samples
    ]


def count_calls(db: Path, where: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM cads_calls WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the tables do not exist yet


def run_until_killed(args: list[str], cwd: Path, db: Path, where: str, threshold: int) -> int:
    """Start `cads *args`, SIGKILL it once the ledger shows `threshold` matching calls; calls at the kill."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([*CADS, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while count_calls(db, where) < threshold:
        if proc.poll() is not None:
            raise AssertionError(f"cads {' '.join(args)} ended before the kill point: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"kill point {where} >= {threshold} never reached")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return count_calls(db, "1 = 1")


def read_back(db: str, data: Path, runs: list[str], out: Path) -> dict[str, tuple[dict, list[dict]]]:
    """Each run's `stats --json` and exported samples, read in this process (one engine, not a CLI each)."""
    import asyncio

    from cadsynth.exports import gather, write
    from cadsynth.report import stats as run_stats
    from cadsynth.store.blobs import BlobStore
    from cadsynth.store.ledger import Ledger

    async def go() -> dict[str, tuple[dict, list[dict]]]:
        ledger = Ledger.open(db, create=False)
        found = {}
        try:
            for run in runs:
                kept = await gather(ledger, run, "kept", card=False)
                write(kept, "jsonl", out / f"{run}-jsonl", BlobStore(data), overwrite=True, license_id="other")
                lines = (out / f"{run}-jsonl" / "samples.jsonl").read_text().splitlines()
                found[run] = (await run_stats(ledger, run), [json.loads(line) for line in lines])
        finally:
            await ledger.close()
        return found

    return asyncio.run(go())


def pg_rows(db: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` on the PostgreSQL database (and schema) a cads URL names; none before its tables exist."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(db)
    conninfo = {"host": url.host, "port": url.port or 5432, "user": url.username, "dbname": url.database}
    if url.password:
        conninfo["password"] = url.password
    if url.query.get("options"):
        conninfo["options"] = url.query["options"]
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def pg_count(db: str, sql: str, params: tuple = ()) -> int:
    rows = pg_rows(db, sql, params)
    return int(rows[0][0]) if rows else 0


# --- `langgraph dev` ---------------------------------------------------------------------------

# What keeps the dev server and its CLI from reaching out: no usage analytics, no check for a newer
# release on PyPI, no LangSmith tracing (the README's Studio section lists the same).
OFFLINE_STUDIO = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
PROJECT_FILES = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "cads.db*",
                                       "cads-data", ".langgraph_api")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def dev_server(root: Path, project: Path) -> Iterator[str]:
    """`langgraph dev` in a copy of the project at `root`, with its default settings; yields its URL.

    The server (and anything it started) is killed on the way out, whatever happened.
    """
    shutil.copytree(root, project, ignore=PROJECT_FILES)
    env = {**os.environ, **OFFLINE_STUDIO}
    for var in ("CADS_DB", "CADS_DATA", "OPENAI_API_KEY", "GOOGLE_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        env.pop(var, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (project / "server.log").open("w")
    langgraph = Path(sys.executable).with_name("langgraph")
    server = subprocess.Popen([str(langgraph), "dev", "--no-browser", "--port", str(port)], cwd=project, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a guard against a server that never comes up, not a timing
        while True:
            if server.poll() is not None:
                raise AssertionError(f"langgraph dev exited {server.returncode}:\n{(project / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"langgraph dev never answered:\n{(project / 'server.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def records(work: Path, table: str, where: str = "1", *args: object) -> list[dict]:
    """A ledger table's records read straight from SQLite, whole: the JSON with the columns it leaves
    out, and ids whole again (the table keeps them within their run)."""
    from cadsynth.store.ledger import _record  # the ledger's own way of reading a row back
    from cadsynth.store.schema import RECORD_COLUMNS

    keys = RECORD_COLUMNS[table]
    with sqlite3.connect(work / "cads.db") as db:
        rows = db.execute(f"SELECT record, {', '.join(keys)} FROM {table} WHERE {where}", args).fetchall()
    return [_record(keys, (json.loads(r[0]), *r[1:])) for r in rows]
