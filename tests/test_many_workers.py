"""Many processes on one PostgreSQL database: bounded connections, a full server waited for, and
schema setup that many processes can start at once (the issue's 8 at once failed 5; 32 failed 30)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from importlib import resources

import pytest
import yaml

from tests.helpers import cads, content, read_back

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # 32 `cads` processes at once
WORKERS = 32
POOL = 2  # connections per process: 32 x 2 leaves the server's other clients room
RUN = ["small.yaml", "--seed", "5", "--rounds", "1", "--target", "1000"]


def _small_panel(folder) -> None:
    """The built-in panel, one proposal each: what is measured here is the store, not the debate."""
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    (folder / "small.yaml").write_text(yaml.safe_dump({**config, "proposals_per_agent": 1}))


def _connections(app: str, stop: threading.Event, peak: list[int]) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        while not stop.wait(0.05):
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()
            peak[0] = max(peak[0], n[0] if n else 0)


def test_32_runs_at_once_on_a_fresh_database(tmp_path, empty_pg_url):
    _small_panel(tmp_path)
    app = f"cads-many-{uuid.uuid4().hex[:8]}"  # libpq names our processes' connections this
    env = {**os.environ, "COLUMNS": "200", "CADS_DB_POOL": str(POOL), "PGAPPNAME": app}
    env.pop("CADS_DB", None)
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_connections, args=(app, stop, peak), daemon=True)
    watcher.start()
    # All at once on a database with no tables: every process races to create the schema.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cadsynth.cli", "run", *RUN, "--db", empty_pg_url, "--run-id", f"w{i}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(WORKERS)
    ]
    failed = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            failed.append(f"w{i} exited {proc.returncode}: {err.strip()[-300:]}")
    stop.set()
    watcher.join()
    assert not failed, "\n".join(failed)
    assert 0 < peak[0] <= WORKERS * POOL

    cads("run", *RUN, "--db", empty_pg_url, "--run-id", "alone", cwd=tmp_path)
    found = read_back(empty_pg_url, tmp_path / "cads-data", ["alone", *(f"w{i}" for i in range(WORKERS))], tmp_path)
    alone_stats, alone_samples = found.pop("alone")
    assert alone_stats["status"] == "done" and alone_samples
    # The same run 33 times over one store: its calls are answered from the call cache by whichever
    # run asked first, so tokens and cost differ by who paid; everything else is the same.
    paid = ("run", "tokens", "cost")
    for run, (stats, samples) in found.items():
        assert stats["status"] == "done", run
        assert {k: v for k, v in stats.items() if k not in paid} == {k: v for k, v in alone_stats.items() if k not in paid}
        assert content(samples) == content(alone_samples), run
