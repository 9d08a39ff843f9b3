"""The store's one upsert per dialect (store.upsert): on the primary key, a row stored again
replaces the stored one's other columns (`upsert`) or is skipped (`insert_new`)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, select

from cadsynth.store.db import sync_engine
from cadsynth.store.upsert import insert, insert_new, upsert


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def test_upsert_replaces_and_insert_new_skips_on_the_whole_key(db_url: str) -> None:
    table = Table(
        f"upsert_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("a", Text, primary_key=True),
        Column("b", Integer, primary_key=True),
        Column("value", Text),
        Column("note", Text),
    )
    engine = sync_engine(db_url)
    table.create(engine)
    try:
        with engine.begin() as conn:
            dialect = conn.dialect.name
            conn.execute(upsert(dialect, table), [{"a": "x", "b": 1, "value": "first", "note": "n"}, {"a": "x", "b": 2, "value": "two", "note": "n"}])
            conn.execute(upsert(dialect, table), [{"a": "x", "b": 1, "value": "second", "note": None}])
            conn.execute(insert_new(dialect, table), [{"a": "x", "b": 2, "value": "ignored", "note": "?"}, {"a": "y", "b": 1, "value": "new", "note": None}])
            rows = sorted(tuple(r) for r in conn.execute(select(table)))
        assert rows == [("x", 1, "second", None), ("x", 2, "two", "n"), ("y", 1, "new", None)]
        assert upsert(dialect, table) is upsert(dialect, table)  # built once
    finally:
        table.drop(engine)
        engine.dispose()


def test_other_databases_are_refused() -> None:
    table = Table("t", MetaData(), Column("k", Text, primary_key=True))
    with pytest.raises(ValueError, match="SQLite or PostgreSQL, not mysql"):
        insert("mysql", table)
