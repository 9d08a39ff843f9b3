"""The ledger's record tables keep each fact once: a record's JSON leaves out what its columns hold."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine

from cadsynth.store.migrate import ensure_schema
from cadsynth.store.schema import RECORD_COLUMNS, SCHEMA_VERSION
from tests.helpers import cads, export, records


def test_records_leave_their_columns_out_and_rows_written_whole_read_the_same(tmp_path: Path) -> None:
    cads("run", "--run-id", "slim", "--rounds", "2", cwd=tmp_path)
    before = export("slim", tmp_path)
    whole = {table: records(tmp_path, table) for table in RECORD_COLUMNS}
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            stored = [json.loads(r) for (r,) in db.execute(f"SELECT record FROM {table}")]
            assert stored and not any(set(columns) & set(r) for r in stored), table
    assert before and all(r["run"].startswith("slim") and r["round"] in (0, 1) for r in whole["cads_judgments"])

    # Schema 7 wrote whole records into the JSON: upgraded, such a store reads as the same data set.
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            key = columns[0]  # the table's primary key
            db.executemany(f"UPDATE {table} SET record = ? WHERE {key} = ?", [(json.dumps(r), r[key]) for r in whole[table]])
        db.execute("UPDATE cads_schema SET version = 7")
    engine = create_engine(f"sqlite:///{tmp_path / 'cads.db'}")
    with engine.begin() as conn:
        ensure_schema(conn)
    engine.dispose()
    with sqlite3.connect(tmp_path / "cads.db") as db:
        assert db.execute("SELECT version FROM cads_schema").fetchone()[0] == SCHEMA_VERSION == 8
        assert "proposer" in json.loads(db.execute("SELECT record FROM cads_proposals").fetchone()[0])
    assert export("slim", tmp_path) == before
