"""A run stopped by a signal, as a person or a scheduler stops it, against the fake OpenAI server
answering after 2 s like a real model: on SIGTERM the calls in flight finish and are recorded, the
process ends with one line and exit status 75, and `cads resume` makes the same data set as a run
never stopped, without paying for any call twice. A second signal stops it at once.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.panelist import Panelist
from tests.helpers import CADS, cads, content, export, stats

pytestmark = pytest.mark.slow  # `cads` processes stopped by signals, each call taking 2 s

KEY_ENV, KEY = "CADS_STOP_OPENAI_KEY", "sk-graceful-stop-0123456789"
ENV = {KEY_ENV: KEY}


def _panel(folder: Path, server: FakeOpenAI) -> str:
    agent = {"provider": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV, "timeout": 30}
    config = {
        "rounds": 2, "target": 1000, "seed": 7, "proposals_per_agent": 2,
        "panel": [
            {"name": "gpt", "model": "gpt-4o", "roles": ["proposer", "critic", "judge", "adversary"], **agent},
            {"name": "mini", "model": "gpt-4o-mini", "roles": ["proposer", "critic", "judge"], **agent},
        ],
    }
    folder.mkdir(exist_ok=True)
    (folder / "panel.yaml").write_text(yaml.safe_dump(config))
    return "panel.yaml"


def _start(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200", **ENV}
    return subprocess.Popen([*CADS, *args], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_mid_call(proc: subprocess.Popen[str], server: FakeOpenAI, after: int, *signals: signal.Signals) -> None:
    """Send `signals` once the fake has received more than `after` requests and is answering some."""
    deadline = time.monotonic() + 120  # a guard against a run that never gets there, not a timing
    while server.request_count <= after or server.stats.in_flight == 0:
        assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "the run never got its calls in flight"
        time.sleep(0.01)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.2)


def _paid_requests(server: FakeOpenAI) -> Counter[str]:
    """The requests the fake answered, by model (each answered: none was cut off)."""
    requests = server.requests
    assert all(r.status == 200 for r in requests), [r.status for r in requests]
    return Counter(r.model for r in requests)


def _ledger_requests(folder: Path, run: str) -> Counter[str]:
    """The requests the run's ledger records as sent (not answered from the call cache), by model."""
    with sqlite3.connect(folder / "cads.db") as db:
        rows = db.execute("SELECT model, count(*) FROM cads_calls WHERE run = ? AND NOT cached GROUP BY model", (run,))
        return Counter(dict(rows.fetchall()))


def _cached(folder: Path, run: str) -> int:
    with sqlite3.connect(folder / "cads.db") as db:
        return int(db.execute("SELECT count(*) FROM cads_calls WHERE run = ? AND cached", (run,)).fetchone()[0])


def test_sigterm_saves_the_calls_in_flight_and_resume_makes_the_same_data(tmp_path: Path) -> None:
    clean, stopped = tmp_path / "clean", tmp_path / "stopped"
    with FakeOpenAI(Panelist(), api_key=KEY, latency=2.0) as never_stopped, FakeOpenAI(Panelist(), api_key=KEY, latency=2.0) as server:
        uninterrupted = _start(clean, "run", _panel(clean, never_stopped), "--run-id", "run")  # meanwhile, for the comparison
        proc = _start(stopped, "run", _panel(stopped, server), "--run-id", "run")
        _signal_mid_call(proc, server, 4, signal.SIGTERM)  # the 4 proposals are in: critics are in flight
        _, err = proc.communicate(timeout=120)

        assert proc.returncode == 75, err
        *_, line = err.strip().splitlines()
        said = re.fullmatch(r"stopped by signal: (\d+) calls? in flight (?:were|was) saved; cads resume run continues", line)
        assert said is not None and int(said[1]) >= 1, err
        assert "leaked" not in err and "Traceback" not in err, err
        # Every request the server answered is in the ledger, and nothing else: none paid and lost.
        assert _ledger_requests(stopped, "run") == _paid_requests(server) != Counter()
        assert stats("run", stopped)["status"] == "interrupted"

        cads("resume", "run", cwd=stopped, env=ENV)
        _, err = uninterrupted.communicate(timeout=300)
        assert uninterrupted.returncode == 0, err
        assert _ledger_requests(stopped, "run") == _paid_requests(server) == _paid_requests(never_stopped)
    # What the stopped run had finished came back from its checkpoint on resume: not one call was
    # made again, nor answered again from the call cache.
    assert _cached(stopped, "run") == _cached(clean, "run") == 0
    resumed, whole = content(export("run", stopped)), content(export("run", clean))
    assert resumed == whole and len(whole) > 0


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    with FakeOpenAI(Panelist(), api_key=KEY, latency=2.0) as server:
        proc = _start(tmp_path, "run", _panel(tmp_path, server), "--run-id", "run")
        _signal_mid_call(proc, server, 0, signal.SIGTERM, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        *_, line = err.strip().splitlines()
        said = re.fullmatch(
            r"stopped at once by a second signal: (\d+) calls? in flight (?:were|was) saved, (\d+) abandoned "
            r"\(not recorded: resume makes them again\); cads resume run continues",
            line,
        )
        assert said is not None and int(said[2]) >= 1, err
        assert "leaked" not in err and "Traceback" not in err, err
        received = len(server.requests)
    # What finished is recorded; what was abandoned is not, and the line says how many that was.
    assert sum(_ledger_requests(tmp_path, "run").values()) == received - int(said[2])
