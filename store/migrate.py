"""Schema creation and versioning: the tables are made on first use and stamped with a version."""

from __future__ import annotations

from sqlalchemy import Connection, inspect, select, text, update

from cadsynth.store import schema as t


class SchemaVersionError(RuntimeError):
    pass


def ensure_schema(conn: Connection) -> None:
    """Create missing tables and record SCHEMA_VERSION; refuse a database written by newer code."""
    t.metadata.create_all(conn, checkfirst=True)
    found = conn.execute(select(t.schema_info.c.version).where(t.schema_info.c.id == 1)).scalar()
    if found is None:
        conn.execute(t.schema_info.insert().values(id=1, version=t.SCHEMA_VERSION))
    elif found > t.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {found}, newer than this cadsynth ({t.SCHEMA_VERSION}); upgrade cadsynth"
        )
    elif found < t.SCHEMA_VERSION:
        _upgrade(conn, found)


def _upgrade(conn: Connection, found: int) -> None:
    """Bring an older database up to SCHEMA_VERSION (create_all above made any missing tables)."""
    if found < 2:
        for table, column, sql_type in ((t.calls, "outcome", "VARCHAR(16)"), (t.runs, "budget_usd", "FLOAT")):
            if column not in {c["name"] for c in inspect(conn).get_columns(table.name)}:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column} {sql_type}"))
    conn.execute(update(t.schema_info).where(t.schema_info.c.id == 1).values(version=t.SCHEMA_VERSION))
