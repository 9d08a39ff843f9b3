"""Lanes on a Ray cluster over the real PostgreSQL: the same data set as in one process, a worker
killed mid-lane changes nothing, and an endpoint's limits hold across all workers.

One local cluster (2 CPUs) serves the module; `cads run --ray ADDRESS` joins it as a user would
join theirs. Its processes are this test process's children and go with `ray.shutdown()`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.panelist import Panelist
from tests.helpers import cads, content, pg_count, pg_rows, read_back
from tests.helpers import cads_process  # `--ray` connects its process to the cluster: a process of its own

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # a Ray cluster, and `cads` processes on it
LANES = ["--lanes", "4", "--seed", "11", "--rounds", "1", "--target", "1000"]


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray = pytest.importorskip("ray")
    # No dashboard, no usage stats: the cluster works offline and starts in seconds.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _slow_panel(folder: Path, **extra: Any) -> str:
    """The built-in panel, one proposal each, answering after 0.1 s like a fast model."""
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    for agent in config["panel"]:
        agent["sim"]["latency"] = 0.1
    (folder / "slow.yaml").write_text(yaml.safe_dump({**config, "proposals_per_agent": 1, **extra}))
    return "slow.yaml"


@pytest.fixture(scope="module")
def alone(tmp_path_factory, pg_url) -> tuple[Path, list[dict]]:
    """The in-process run every cluster run must equal."""
    work = tmp_path_factory.mktemp("ray-alone")
    cads("run", _slow_panel(work), *LANES, "--db", pg_url, "--run-id", "ray-alone", cwd=work)
    return work, read_back(pg_url, work / "cads-data", ["ray-alone"], work)["ray-alone"][1]


def _lane_calls(db: str, run: str) -> int:
    return pg_count(db, "SELECT count(*) FROM cads_calls WHERE run LIKE %s", (f"{run}.lane%",))


def test_lanes_on_ray_make_the_same_data_set(tmp_path, pg_url, cluster, alone):
    cads_process("run", _slow_panel(tmp_path), *LANES, "--ray", cluster, "--db", pg_url, "--run-id", "ray-same", cwd=tmp_path)
    stats, samples = read_back(pg_url, tmp_path / "cads-data", ["ray-same"], tmp_path)["ray-same"]
    assert stats["status"] == "done" and len(stats["lanes"]) == 4
    assert content(samples) == content(alone[1])
    # The readers work on it like on any run, and the export finds every image the workers painted.
    listed = cads("runs", "--db", pg_url, cwd=tmp_path).stdout
    assert "ray-same" in listed and "4 lanes" in listed
    assert all((tmp_path / "ray-same-jsonl" / s["image"]).is_file() for s in samples)  # copied beside the export


def _start_and_kill_a_worker(folder: Path, db: str, run: str, config: str, cluster: str) -> tuple[subprocess.Popen, int]:
    """Start `cads run` on the cluster; SIGKILL the worker advancing lane 1 (its lease names it)
    once the lane is into its judging. Returns the driver and the killed worker's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cadsynth.cli", "run", config, *LANES, "--ray", cluster, "--db", db, "--run-id", run],
        cwd=folder, env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, "lane 1 never reached its judges"
        judged = pg_count(db, "SELECT count(*) FROM cads_calls WHERE run = %s AND role = 'judge'", (f"{run}.lane1",))
        owner = pg_rows(db, "SELECT lease_owner FROM cads_runs WHERE id = %s", (f"{run}.lane1",))
        if judged >= 3 and owner and owner[0][0]:
            victim = int(owner[0][0].rpartition(":")[2])
            break
        time.sleep(0.02)
    assert victim != proc.pid  # a worker, not the driver
    os.kill(victim, signal.SIGKILL)
    return proc, victim


def test_a_worker_killed_mid_lane_changes_nothing(tmp_path, pg_url, cluster, alone):
    proc, _ = _start_and_kill_a_worker(tmp_path, pg_url, "ray-kill", _slow_panel(tmp_path), cluster)
    # The readers work while the lanes run (Ray is starting lane 1 again now).
    during = json.loads(cads("stats", "ray-kill", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert during["status"] in ("running", "done") and len(during["lanes"]) == 4
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    stats, samples = read_back(pg_url, tmp_path / "cads-data", ["ray-kill"], tmp_path)["ray-kill"]
    assert stats["status"] == "done"
    assert len({s["id"] for s in samples}) == len(samples)
    assert content(samples) == content(alone[1])
    # Only the tasks in flight when the worker died were done again: at most one judging step's
    # 16 (4 judges x 4 proposals), whose calls the worker's gate kept to 8 at a time.
    extra = _lane_calls(pg_url, "ray-kill") - _lane_calls(pg_url, "ray-alone")
    assert 0 <= extra <= 16


def test_a_lane_whose_worker_keeps_dying_stops_the_run_in_one_line(tmp_path, pg_url, cluster):
    config = _slow_panel(tmp_path, ray={"retries": 0})  # the first death is one too many
    proc, _ = _start_and_kill_a_worker(tmp_path, pg_url, "ray-dies", config, cluster)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: run 'ray-dies' failed: lane ray-dies.lane1: its worker died 1 time (ray.retries: 0)")
    assert "cads resume ray-dies" in line
    stats = json.loads(cads("stats", "ray-dies", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert stats["status"] == "failed" and stats["reason"].startswith("lane ray-dies.lane1: its worker died")
    # The other lanes stopped where they were, resumable, not left running.
    assert all(lane["status"] in ("interrupted", "failed", "done") for lane in stats["lanes"])


def test_a_lane_that_keeps_failing_stops_the_run_in_one_line(tmp_path, pg_url, cluster):
    # Nothing listens on the endpoint: the lane fails on its own (not retried by Ray), the run stops.
    config = {
        "rounds": 1, "target": 100, "lanes": 2, "proposals_per_agent": 1,
        "retry": {"attempts": 1, "base_delay": 0.0, "max_delay": 0.0},
        "panel": [{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1",
                   "roles": ["proposer", "critic", "judge", "adversary"]}],
    }
    (tmp_path / "down.yaml").write_text(yaml.safe_dump(config))
    result = cads_process("run", "down.yaml", "--ray", cluster, "--db", pg_url, "--run-id", "ray-down", cwd=tmp_path, check=False, timeout=300)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(r"error: run 'ray-down' failed: lane ray-down\.lane\d: agent 'gpt' cannot reach http://127\.0\.0\.1:9/v1", line)
    assert "cads resume ray-down" in line
    stats = json.loads(cads("stats", "ray-down", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert stats["status"] == "failed" and stats["reason"].startswith("lane ray-down.lane")


def test_limits_hold_across_four_workers(tmp_path, pg_url, cluster):
    # Two requests a second, and one in flight: the one connection could carry 3.3 a second, so
    # the rate is rpm's to hold, and a second's two permits leave together, so the one connection
    # is concurrency's. Four workers with limits of their own would break both.
    rpm, concurrency = 120, 1
    with FakeOpenAI(Panelist(), latency=0.3) as server:
        config = {
            "rounds": 1, "target": 100, "lanes": 4, "proposals_per_agent": 3, "seed": 2,
            "ray": {"lane_cpus": 0.5},  # all four lanes at once on the 2-CPU cluster
            "limits": [{"provider": "openai", "model": "gpt-4o", "rpm": rpm, "concurrency": concurrency}],
            "panel": [{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url,
                       "roles": ["proposer", "critic", "judge", "adversary"]}],
        }
        (tmp_path / "limited.yaml").write_text(yaml.safe_dump(config))
        cads_process("run", "limited.yaml", "--ray", cluster, "--db", pg_url, "--run-id", "ray-limits", cwd=tmp_path)
        requests = server.requests
        most_in_flight = server.stats.snapshot()["max_in_flight"]
    assert len(requests) >= 16
    assert most_in_flight <= concurrency
    starts = sorted(r.started for r in requests)
    # The desk lets at most rpm/60 go in any second; the server sees them after a hop from the
    # desk to a worker, which under load can carry one second's share into the next. So in any
    # five seconds at most six seconds' shares arrive (four unshared workers: 3.3 a second, 16).
    span = 5.0
    busiest = max(sum(1 for t in starts[i:] if t < start + span) for i, start in enumerate(starts))
    assert busiest <= (span + 1) * rpm // 60
    stats = json.loads(cads("stats", "ray-limits", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert stats["status"] == "done" and all(lane["proposals"] for lane in stats["lanes"])


def test_bad_ray_input_is_one_line_and_writes_nothing(tmp_path, pg_url):
    on_sqlite = cads_process("run", "--lanes", "2", "--ray", cwd=tmp_path, check=False)
    assert on_sqlite.returncode == 2 and not (tmp_path / "cads.db").exists()
    assert on_sqlite.stderr.startswith("error: --ray with --db 'sqlite:///cads.db': ") and on_sqlite.stderr.count("\n") == 1
    assert "use --db postgresql+psycopg://" in on_sqlite.stderr
    bad = cads_process("run", "--ray", "not an address", "--db", pg_url, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --ray 'not an address': use auto, HOST:PORT")
    nobody = cads_process("run", "--ray", "127.0.0.1:1", "--db", pg_url, "--run-id", "ray-nobody", cwd=tmp_path, check=False)
    assert nobody.returncode == 2 and "nothing answers at '127.0.0.1:1'" in nobody.stderr
    assert not pg_rows(pg_url, "SELECT id FROM cads_runs WHERE id LIKE %s", ("ray-nobody%",))
    pool = cads("runs", "--db", pg_url, cwd=tmp_path, check=False, env={"CADS_DB_POOL": "many"})
    assert pool.returncode == 2 and pool.stderr.startswith("error: CADS_DB_POOL='many': give the connections per process")


def test_a_signal_to_the_driver_stops_every_lane_gracefully(tmp_path, pg_url, cluster):
    # Each lane's worker hears the stop as Ray's cancel: its calls in flight finish and are recorded.
    with FakeOpenAI(Panelist(), latency=2.0) as server:
        config = {
            "rounds": 1, "target": 100, "lanes": 2, "proposals_per_agent": 1, "seed": 4,
            "ray": {"lane_cpus": 0.5},  # both lanes at once on the 2-CPU cluster
            "panel": [{"name": name, "provider": "openai", "model": model, "base_url": server.base_url, "timeout": 30,
                       "roles": ["proposer", "critic", "judge", "adversary"]}
                      for name, model in (("gpt", "gpt-4o"), ("mini", "gpt-4o-mini"))],
        }
        (tmp_path / "slow.yaml").write_text(yaml.safe_dump(config))
        args = ["run", "slow.yaml", "--ray", cluster, "--db", pg_url, "--run-id", "ray-stop"]
        driver = subprocess.Popen([sys.executable, "-m", "cadsynth.cli", *args], cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while server.request_count < 4 or server.stats.in_flight == 0:  # both lanes are critiquing
            assert driver.poll() is None, driver.communicate()[1]
            assert time.monotonic() < deadline, "the lanes never got their calls in flight"
            time.sleep(0.01)
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 75, err
        line = err.strip().splitlines()[-1]
        assert re.fullmatch(r"stopped by signal: [1-9]\d* calls? in flight (were|was) saved; cads resume ray-stop continues", line)
        assert "leaked" not in err
        requests = len(server.requests)
        assert _lane_calls(pg_url, "ray-stop") == requests  # every paid request is in the ledger, and only those
        stats = json.loads(cads("stats", "ray-stop", "--json", "--db", pg_url, cwd=tmp_path).stdout)
        assert stats["status"] == "interrupted" and {lane["status"] for lane in stats["lanes"]} == {"interrupted"}
        cads_process("resume", "ray-stop", "--db", pg_url, cwd=tmp_path)
        # Resumed, the lanes made only the calls they had not made: none twice, none from the cache.
        assert _lane_calls(pg_url, "ray-stop") == len(server.requests) > requests
    assert pg_count(pg_url, "SELECT count(*) FROM cads_calls WHERE run LIKE %s AND cached", ("ray-stop.lane%",)) == 0
    assert json.loads(cads("stats", "ray-stop", "--json", "--db", pg_url, cwd=tmp_path).stdout)["status"] == "done"
