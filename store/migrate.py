"""Schema creation and versioning: the tables are made on first use and stamped with a version."""

from __future__ import annotations

from sqlalchemy import Connection, select

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
    # Steps from older versions go here as the schema changes.
