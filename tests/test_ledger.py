"""The ledger keeps each fact once: a record's JSON leaves out what its columns hold, and a call's
target leaves out its run's id."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from cadsynth.store.migrate import ensure_schema
from cadsynth.store.schema import RECORD_COLUMNS, SCHEMA_VERSION, calls, schema_info
from tests.helpers import cads, export, records, stats


def test_records_leave_their_columns_out_and_rows_written_whole_read_the_same(tmp_path: Path) -> None:
    cads("run", "--run-id", "slim", "--rounds", "2", cwd=tmp_path)
    before = export("slim", tmp_path)
    cost = stats("slim", tmp_path)["cost"]
    whole = {table: records(tmp_path, table) for table in RECORD_COLUMNS}
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            stored = [json.loads(r) for (r,) in db.execute(f"SELECT record FROM {table}")]
            assert stored and not any(set(columns) & set(r) for r in stored), table
        targets = {r[0] for r in db.execute("SELECT target FROM cads_calls")}
    assert before and all(r["run"].startswith("slim") and r["round"] in (0, 1) for r in whole["cads_judgments"])
    keys = {f"r{p['round']}/{p['proposer']}/{p['index']}" for p in whole["cads_proposals"]}
    assert keys <= targets and "r0/context" in targets and not any(t.startswith("slim") for t in targets)

    # Schema 7 wrote whole records into the JSON: upgraded, such a store reads as the same data set.
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            key = columns[0]  # the table's primary key
            db.executemany(f"UPDATE {table} SET record = ? WHERE {key} = ?", [(json.dumps(r), r[key]) for r in whole[table]])
        # ... and before schema 9 a proposal's calls named it by its id, the run's id first.
        db.execute("UPDATE cads_calls SET target = run || '/' || target WHERE target NOT LIKE '%/context'")
        db.execute("UPDATE cads_schema SET version = 7")
    engine = create_engine(f"sqlite:///{tmp_path / 'cads.db'}")
    with engine.begin() as conn:
        ensure_schema(conn)
    engine.dispose()
    with sqlite3.connect(tmp_path / "cads.db") as db:
        assert db.execute("SELECT version FROM cads_schema").fetchone()[0] == SCHEMA_VERSION == 9
        assert "proposer" in json.loads(db.execute("SELECT record FROM cads_proposals").fetchone()[0])
        assert {r[0] for r in db.execute("SELECT target FROM cads_calls")} == targets
    assert export("slim", tmp_path) == before and stats("slim", tmp_path)["cost"] == cost


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "empty_pg_url")


def test_the_upgrade_to_9_takes_the_run_id_off_only_the_targets_it_begins(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    row = {"round": 0, "agent": "x", "provider": "sim", "model": "m", "attempt": 0}
    with engine.begin() as conn:
        ensure_schema(conn)
        conn.execute(calls.insert(), [
            {**row, "run": "a.lane0", "role": "judge", "target": "a.lane0/r0/x/1"},
            {**row, "run": "a.lane0", "role": "adversary", "target": "r0/context"},
            {**row, "run": "b", "role": "judge", "target": "a.lane0/r0/x/1"},  # another run's problem: kept whole
        ])
        conn.execute(update(schema_info).values(version=8))
    with engine.begin() as conn:
        ensure_schema(conn)
        targets = conn.execute(select(calls.c.run, calls.c.target).order_by(calls.c.seq)).all()
        version = conn.execute(select(schema_info.c.version)).scalar()
    engine.dispose()
    assert version == SCHEMA_VERSION
    assert [tuple(r) for r in targets] == [("a.lane0", "r0/x/1"), ("a.lane0", "r0/context"), ("b", "a.lane0/r0/x/1")]
