"""INSERT ... ON CONFLICT on the store's two databases, written once for the ledger, the call
cache and the checkpoint saver.

SQLite and PostgreSQL spell an upsert the same way, but SQLAlchemy has one Insert construct per
dialect. Every table the store upserts into is keyed by its primary key, so that is the conflict
target here. Other databases never get this far: `store.db` refuses their URLs.
"""

from __future__ import annotations

import functools
from typing import TypeAlias

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

Insert: TypeAlias = postgresql.Insert | sqlite.Insert


def insert(dialect: str, table: Table) -> Insert:
    """An INSERT into `table` that can say what to do on conflict, in `dialect`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"the store runs on SQLite or PostgreSQL, not {dialect}")


def _key(stmt: Insert) -> list[str]:
    return [c.name for c in stmt.table.primary_key.columns]  # type: ignore[attr-defined]


def replace_existing(stmt: Insert) -> Insert:
    """`stmt`, where a row whose key is stored already replaces the stored row's other columns."""
    key = _key(stmt)
    others = {c.name: stmt.excluded[c.name] for c in stmt.table.columns if c.name not in key}  # type: ignore[attr-defined]
    return stmt.on_conflict_do_update(index_elements=key, set_=others)


def skip_existing(stmt: Insert) -> Insert:
    """`stmt`, where a row whose key is stored already is skipped: the first one stays."""
    return stmt.on_conflict_do_nothing(index_elements=_key(stmt))


# Built once per dialect and table: building a statement costs more than many writes it makes.


@functools.cache
def upsert(dialect: str, table: Table) -> Insert:
    """Insert rows into `table`; a row whose key is stored already replaces it (an idempotent write)."""
    return replace_existing(insert(dialect, table))


@functools.cache
def insert_new(dialect: str, table: Table) -> Insert:
    """Insert rows into `table`, skipping any whose key is stored already."""
    return skip_existing(insert(dialect, table))
