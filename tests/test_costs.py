"""Spending safely from the CLI: a budget stops a run at a round boundary and resume continues it;
a dry run prices a real panel without calling anything; missing keys are caught before anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from cadsynth.config import load_config
from tests import helpers

ROUNDS = 4


def cads(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return helpers.cads(*args, cwd=cwd, env=env, check=False)


def stats(run: str, cwd: Path) -> dict:
    return json.loads(cads("stats", run, "--json", cwd=cwd).stdout)


def priced_sim_panel(path: Path) -> Path:
    """The built-in simulated panel with prices on its model names, so its calls cost money."""
    config = load_config(None).model_dump(mode="json", exclude_none=True)
    config.update(rounds=ROUNDS, target=1000, proposals_per_agent=2)
    config["prices"] = {m: {"input": 1.0, "output": 4.0} for m in ("sim-strong", "sim-balanced", "sim-small")}
    path.write_text(yaml.safe_dump(config))
    return path


def test_budget_stops_at_a_round_boundary_and_resume_continues(tmp_path):
    config = priced_sim_panel(tmp_path / "priced.yaml")
    # A tiny budget: round 0 runs (nothing to estimate from yet), then the run stops before round 1.
    result = cads("run", str(config), "--run-id", "b", "--budget", "0.000001", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stopped before round 1" in result.stdout and "cads resume b --budget" in result.stdout
    s = stats("b", tmp_path)
    assert s["status"] == "stopped" and [r["round"] for r in s["rounds"]] == [0]
    one_round = s["cost"]["usd"]
    assert one_round > 0

    refused = cads("resume", "b", cwd=tmp_path)
    assert refused.returncode == 2 and "higher --budget" in refused.stderr

    # Room for 2.5 rounds: round 1 runs; then two spent plus one estimated would pass it.
    budget = 2.5 * one_round
    again = cads("resume", "b", "--budget", f"{budget:.6f}", cwd=tmp_path)
    assert again.returncode == 0 and "stopped before round 2" in again.stdout, again.stdout + again.stderr
    s = stats("b", tmp_path)
    assert s["status"] == "stopped" and [r["round"] for r in s["rounds"]] == [0, 1]
    assert s["cost"]["usd"] <= budget and s["cost"]["budget_usd"] == float(f"{budget:.6f}")

    done = cads("resume", "b", "--budget", "1000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    s = stats("b", tmp_path)
    assert s["status"] == "done" and [r["round"] for r in s["rounds"]] == list(range(ROUNDS))
    assert s["proposals"] == ROUNDS * 4 * 2  # every round's proposals once: nothing repeated or lost


def test_dry_run_prices_a_real_panel_without_keys_or_network(tmp_path):
    config = load_config(None).model_dump(mode="json", exclude_none=True)
    config.update(rounds=2, target=1000, proposals_per_agent=2)
    for agent in config["panel"]:
        agent.update(provider="openai", model="gpt-4o", api_key_env="NO_SUCH_KEY_SET")
        agent.pop("sim")
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(config))
    result = cads("run", "real.yaml", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for agent in ("sim-vega", "sim-lyra", "sim-orion", "sim-nova"):
        assert agent in out
    assert "openai gpt-4o" in out and "2 rounds" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert float(total.split("│")[-2]) > 0  # gpt-4o is priced by default
    assert not (tmp_path / "cads.db").exists() and not (tmp_path / "cads-data").exists()
    # 2 rounds of 4 proposers x 2 proposals cannot reach 1000 samples, and the dry run says so.
    assert "at most 16 samples, fewer than the target of 1000" in result.stderr


def test_every_missing_key_is_reported_before_anything_is_written(tmp_path):
    config = load_config(None).model_dump(mode="json", exclude_none=True)
    config["panel"][0].update(provider="openai", model="gpt-4o", api_key_env="CADS_NOPE_1")
    config["panel"][1].update(provider="google", model="gemini-2.5-flash", api_key_env="CADS_NOPE_2")
    config["panel"][2].update(provider="openai", model="qwen", base_url="http://127.0.0.1:9/v1")  # local: no key
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump(config))
    result = cads("run", "keys.yaml", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "sim-vega" in lines[0] and "CADS_NOPE_1" in lines[0]
    assert "sim-lyra" in lines[1] and "CADS_NOPE_2" in lines[1]
    assert not (tmp_path / "cads.db").exists()


def test_a_version_1_database_gains_the_cost_columns(tmp_path):
    """Databases written before budgets and faults were recorded are upgraded in place."""
    import sqlite3

    from sqlalchemy import create_engine

    from cadsynth.store import schema as t
    from cadsynth.store.migrate import ensure_schema

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        ensure_schema(conn)
    with sqlite3.connect(path) as db:  # back to the version 1 layout
        db.execute("ALTER TABLE cads_calls DROP COLUMN outcome")
        db.execute("ALTER TABLE cads_runs DROP COLUMN budget_usd")
        db.execute("ALTER TABLE cads_runs DROP COLUMN reason")
        db.execute("DROP TABLE cads_call_cache")
        db.execute("UPDATE cads_schema SET version = 1")
    with engine.begin() as conn:
        ensure_schema(conn)
    engine.dispose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM cads_schema").fetchone()[0] == t.SCHEMA_VERSION
        assert "outcome" in {r[1] for r in db.execute("PRAGMA table_info(cads_calls)")}
        assert {"budget_usd", "reason"} <= {r[1] for r in db.execute("PRAGMA table_info(cads_runs)")}
        assert db.execute("SELECT COUNT(*) FROM cads_call_cache").fetchone()[0] == 0
