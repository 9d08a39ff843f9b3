"""A run rides out its database going away: a PostgreSQL restart, connections cut, an outage.

Against the machine's real PostgreSQL cluster (CI runs as root and may restart it; every test
here leaves it running). The run is a process of its own with four lanes; the same config run
undisturbed is the data set each disturbed run must end with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.helpers import CADS, HIDDEN, cads, content, export, free_port, pg_count, pg_rows, stats

APP = "cads-outage-test"  # the run's connections, by their application_name
RUN = ["--lanes", "4", "--seed", "11", "--rounds", "3", "--target", "1000"]


def _cluster(action: str) -> None:
    """Stop, start or restart the machine's cluster (the one .ci/run starts), as an operator would."""
    [version] = os.listdir("/etc/postgresql")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def server() -> None:
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        pytest.skip("restarting the PostgreSQL cluster needs pg_ctlcluster and root (as on CI)")


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory, pg_url: str, server: None) -> tuple[Path, str]:
    """A folder with the config (simulated calls take 0.1 s, so a run lasts some seconds) and the
    database URL (its connections named APP) holding the undisturbed run `calm`."""
    work = tmp_path_factory.mktemp("outage")
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    for agent in config["panel"]:
        agent["sim"]["latency"] = 0.1
    (work / "slow.yaml").write_text(yaml.safe_dump(config))
    db = make_url(pg_url).update_query_dict({"application_name": APP}).render_as_string(hide_password=False)
    cads("run", "slow.yaml", "--db", db, "--run-id", "calm", *RUN, cwd=work)
    return work, db


def _start(work: Path, db: str, *args: str, patience: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    env.update(COLUMNS="200", CADS_DB=db, CADS_DB_PATIENCE=str(patience))
    return subprocess.Popen([*CADS, *args], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _calls(db: str, run: str) -> int:
    return pg_count(db, "SELECT count(*) FROM cads_calls WHERE run LIKE %s", (f"{run}.lane%",))


def _when_calls(db: str, run: str, proc: subprocess.Popen[str], at_least: int) -> None:
    """Wait until the run's lanes have made `at_least` calls (the disturbance then comes mid-run)."""
    deadline = time.monotonic() + 180
    while _calls(db, run) < at_least:
        assert proc.poll() is None, f"the run ended before the disturbance: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run never reached the disturbance point"
        time.sleep(0.05)


def _same_data_as_calm(work: Path, db: str, run: str) -> None:
    assert stats(run, work, "--db", db)["status"] == "done"
    assert content(export(run, work, "--db", db)) == content(export("calm", work, "--db", db))


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgresql_restart_mid_run_is_waited_out(calm):
    work, db = calm
    run = _start(work, db, "run", "slow.yaml", "--run-id", "restarted", *RUN, patience=120)
    _when_calls(db, "restarted", run, 60)
    _cluster("restart")  # a fast shutdown: every session is cut, the server away for a moment
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert "kept" in out.splitlines()[-1]
    _same_data_as_calm(work, db, "restarted")


@pytest.mark.postgres
@pytest.mark.slow
def test_connections_cut_again_and_again_are_reconnected(calm):
    work, db = calm
    run = _start(work, db, "run", "slow.yaml", "--run-id", "cut", *RUN, patience=120)
    _when_calls(db, "cut", run, 20)
    cuts = 0
    while run.poll() is None and cuts < 8:
        killed = pg_rows(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = %s AND pid <> pg_backend_pid()", (APP,))
        cuts += any(ok for (ok,) in killed)
        time.sleep(1.0)
    out, err = run.communicate(timeout=600)
    assert cuts >= 3, "the run ended before its connections were cut three times"
    assert run.returncode == 0, err
    _same_data_as_calm(work, db, "cut")


@pytest.mark.postgres
@pytest.mark.slow
def test_an_outage_past_the_patience_fails_the_run_and_resume_completes_it(calm):
    work, db = calm
    run = _start(work, db, "run", "slow.yaml", "--run-id", "outage", *RUN, patience=3)
    _when_calls(db, "outage", run, 60)
    _cluster("stop")
    try:
        out, err = run.communicate(timeout=120)
    finally:
        _cluster("start")
    assert run.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("error: run 'outage' failed: the database was unavailable for ")
    assert "longer than CADS_DB_PATIENCE (3 s)" in lines[0] and "cads resume outage" in lines[0]
    # The database could not be told: the run reads as interrupted, and resumes.
    assert stats("outage", work, "--db", db)["status"] in ("interrupted", "failed")
    resumed = _start(work, db, "resume", "outage", patience=60)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    _same_data_as_calm(work, db, "outage")


@pytest.mark.postgres
def test_the_waiting_is_shown_while_the_database_is_away(server, empty_pg_url, monkeypatch):
    """In process: the store's outage notice, which the progress line shows, while a read waits."""
    import asyncio

    from cadsynth.store.ledger import Ledger
    from cadsynth.store.patience import outage

    seen: list[str] = []

    async def go() -> None:
        ledger = Ledger.open(empty_pg_url)
        await ledger.runs()  # reached once: from now on an outage is waited out
        stopped = threading.Thread(target=_cluster, args=("stop",))
        stopped.start()
        await asyncio.to_thread(stopped.join)

        async def watch() -> None:
            while not seen:
                if outage.describe():
                    seen.append(outage.describe() or "")
                    await asyncio.to_thread(_cluster, "start")
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            assert await ledger.runs() == []  # waited for the server, then answered
        finally:
            if not seen:
                _cluster("start")
            watcher.cancel()
            await ledger.close()

    monkeypatch.setenv("CADS_DB_PATIENCE", "120")
    asyncio.run(go())
    assert seen and seen[0].startswith("database unavailable for ") and "(waiting up to 120 s)" in seen[0]
    assert outage.describe() is None


# --- what is waited for, and by what -----------------------------------------------------------


def test_which_failures_are_waited_out(tmp_path: Path, pg_url: str) -> None:
    """Real errors from both backends: the database away or locked is waited for; a wrong
    statement, a missing table or a database never reached is not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from cadsynth.store.patience import transient

    def error(engine, sql: str) -> DBAPIError:
        with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
            conn.execute(text(sql))
        return caught.value

    file = tmp_path / "locked.db"
    holder = create_engine(f"sqlite:///{file}")
    impatient = create_engine(f"sqlite:///{file}", connect_args={"timeout": 0})
    with holder.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        assert transient(error(impatient, "SELECT * FROM t"))  # database is locked
        conn.exec_driver_sql("ROLLBACK")
    assert not transient(error(impatient, "SELECT * FROM missing"))  # no such table
    assert not transient(error(impatient, "SELEC 1"))  # a syntax error

    nobody = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    assert transient(error(nobody, "SELECT 1"))  # refused: away (waited for once it was reached)
    server = create_engine(pg_url)
    assert not transient(error(server, "SELECT * FROM no_such_table"))
    with server.connect() as conn:  # cut by the server, mid-session
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with create_engine(pg_url).connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as cut:
            conn.execute(text("SELECT 1"))
    assert transient(cut.value)


def test_a_database_never_reached_is_not_waited_for(tmp_path: Path) -> None:
    """A wrong URL, or a server never started, says so at once: only a database this process
    has been answered by is waited for."""
    import asyncio

    from cadsynth.store.ledger import Ledger
    from cadsynth.store.patience import outage

    async def go() -> None:
        ledger = Ledger.open(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
        try:
            with pytest.raises(Exception, match="Connection refused"):
                await asyncio.wait_for(ledger.runs(), timeout=20)
        finally:
            await ledger.close()

    asyncio.run(go())
    assert outage.describe() is None


def test_every_store_operation_waits_out_an_outage() -> None:
    """From the sources: every method of the ledger, the call cache and the notes that uses the
    database is patient (`@patient`, or `@whole`, which is too); the checkpoint savers reach it
    only through their patient `_read` and `_write` (and `setup`, which those call)."""
    import ast

    store = Path(__file__).resolve().parent.parent / "store"
    unguarded = []
    for module in ("records.py", "runs.py", "notes.py", "cache.py", "ledger_base.py"):
        tree = ast.parse((store / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.AsyncFunctionDef) and "self.engine." in ast.unparse(node):
                guards = {ast.unparse(d) for d in node.decorator_list}
                if not guards & {"patient", "whole"} and node.name != "close":
                    unguarded.append(f"{module}:{node.name}")
    for module in ("checkpoint/aio.py", "checkpoint/sync.py"):
        tree = ast.parse((store / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                uses = any(f"engine.{verb}(" in ast.unparse(node) or f"_autocommit.{verb}(" in ast.unparse(node)
                           or "connected," in ast.unparse(node) for verb in ("connect", "begin"))
                guards = {ast.unparse(d) for d in node.decorator_list}
                if uses and node.name != "setup" and not guards & {"patient", "patient_sync"}:
                    unguarded.append(f"{module}:{node.name}")
    assert unguarded == []
