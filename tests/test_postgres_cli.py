"""`cads` against the real PostgreSQL server behaves exactly as against SQLite."""

from __future__ import annotations

import json

import pytest

from tests.helpers import cads, content, export

pytestmark = pytest.mark.postgres
RUN = ["--seed", "9", "--rounds", "2", "--target", "1000"]


def _all(db: str, cwd, run: str) -> tuple[dict, list[dict], str]:
    cads("run", "--db", db, "--run-id", run, *RUN, cwd=cwd)
    stats = json.loads(cads("stats", run, "--json", "--db", db, cwd=cwd).stdout)
    samples = export(run, cwd, "--db", db)
    show = cads("show", run, "--round", "1", "--db", db, cwd=cwd).stdout
    return stats, samples, show


def test_same_results_on_postgres_and_sqlite(tmp_path, pg_url):
    pg_stats, pg_samples, pg_show = _all(pg_url, tmp_path, "run-pg")
    lite_stats, lite_samples, lite_show = _all("sqlite:///lite.db", tmp_path, "run-sq")
    for stats in (pg_stats, lite_stats):
        stats.pop("run")
    assert pg_stats == lite_stats and pg_stats["kept"] > 0
    assert content(pg_samples) == content(lite_samples)
    assert pg_show.replace("run-pg", "RUN") == lite_show.replace("run-sq", "RUN")
    assert "run-pg" in cads("runs", "--db", pg_url, cwd=tmp_path).stdout


def test_resume_and_replay_on_postgres(tmp_path, pg_url):
    cads("run", "--db", pg_url, "--run-id", "pg-parent", *RUN, cwd=tmp_path)
    cads("replay", "pg-parent", "--round", "1", "--run-id", "pg-child", "--db", pg_url, cwd=tmp_path)
    child = json.loads(cads("stats", "pg-child", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    parent = json.loads(cads("stats", "pg-parent", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert child["parent"] == "pg-parent" and child["rounds"] == parent["rounds"]  # same config: same rounds
