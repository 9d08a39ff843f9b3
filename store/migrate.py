"""Schema creation and versioning: the tables are made on first use and stamped with a version."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cadsynth.store import schema as t

# Any fixed 64-bit number: the advisory lock that serializes schema setup on PostgreSQL.
SCHEMA_LOCK_KEY = 0x0CAD5_5C4E


class SchemaVersionError(RuntimeError):
    pass


def _found(conn: Connection) -> int | None:
    found = conn.execute(select(t.schema_info.c.version).where(t.schema_info.c.id == 1)).scalar()
    if found is not None and found > t.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {found}, newer than this cadsynth ({t.SCHEMA_VERSION}); upgrade cadsynth"
        )
    return found


def ensure_schema(conn: Connection) -> None:
    """Create missing tables and record SCHEMA_VERSION; refuse a database written by newer code."""
    t.metadata.create_all(conn, checkfirst=True)
    found = _found(conn)
    if found is None:
        conn.execute(t.schema_info.insert().values(id=1, version=t.SCHEMA_VERSION))
    elif found < t.SCHEMA_VERSION:
        _upgrade(conn, found)


def setup_schema(conn: Connection) -> None:
    """`ensure_schema`, safe to run from many processes at once: the one way the store sets up.

    Checks the recorded version before touching anything (a database from a newer cadsynth is
    refused as it is), and creates under an advisory lock on PostgreSQL, retrying on SQLite when
    another process created a table first. Takes a connection with no transaction open.
    """
    for attempt in range(3):
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                if inspect(conn).has_table(t.schema_info.name):
                    found = conn.execute(select(t.schema_info.c.version).where(t.schema_info.c.id == 1)).scalar()
                    if found is not None and found > t.SCHEMA_VERSION:
                        url = conn.engine.url.render_as_string(hide_password=True)
                        raise SchemaVersionError(
                            f"database {url} has schema version {found}, newer than this "
                            f"cadsynth ({t.SCHEMA_VERSION}); upgrade cadsynth or use another database"
                        )
                ensure_schema(conn)
            return
        except DBAPIError:
            # SQLite: another process created a table or stamped the version between our look
            # and our write. Look again.
            if attempt == 2:
                raise


def check_version(conn: Connection) -> None:
    """For readers, which change nothing: refuse a newer database, and an older one that needs upgrading."""
    found = _found(conn)
    if found is not None and found < t.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {found}, older than this cadsynth ({t.SCHEMA_VERSION}); "
            "any `cads run` or `cads resume` on it upgrades it"
        )


def _upgrade(conn: Connection, found: int) -> None:
    """Bring an older database up to SCHEMA_VERSION (create_all above made any missing tables)."""
    added = {
        2: ((t.calls, "outcome", "VARCHAR(16)"), (t.runs, "budget_usd", "FLOAT")),
        3: ((t.runs, "reason", "TEXT"), (t.runs, "lane_of", "VARCHAR(128)"), (t.runs, "lane", "INTEGER")),
        4: ((t.calls, "attempt", "INTEGER"),),
        12: ((t.calls, "detail", "TEXT"),),
        13: ((t.calls, "batch", "BOOLEAN"), (t.calls, "online_cost_usd", "FLOAT")),
    }
    for version, columns in added.items():
        if found >= version:
            continue
        for table, column, sql_type in columns:
            if column not in {c["name"] for c in inspect(conn).get_columns(table.name)}:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column} {sql_type}"))
    if found < 5:
        _threads_to_uuids(conn)
    if found < 7:
        conn.execute(text("DROP INDEX IF EXISTS ix_cads_calls_run"))
    if found < 9:  # before version 9 a call's target began with its run's id
        _within_run(conn, t.calls, "target")
    if found < 10:
        # A call row from before version 4 has no attempt: it takes -seq, which no request's place
        # among its retries can equal.
        _rebuilt(conn, t.calls, attempt=lambda old: func.coalesce(old.attempt, -old.seq))
        for table in (t.proposals, t.critiques, t.judgments, t.consensus):
            _rebuilt(conn, table)  # keyed by run first, so that ids within a run cannot collide
            for name in t.RUN_RELATIVE:
                if name in table.c:
                    _within_run(conn, table, name)
    if found < 11:
        _sim_truth_out_of_proposals(conn)
    if found < 15:
        next(i for i in t.contexts.indexes if i.name == "ix_cads_contexts_run_round").create(conn, checkfirst=True)
    if found < 4 and conn.dialect.name == "postgresql":  # SQLite's INTEGER is 64-bit already
        conn.execute(text(f"ALTER TABLE {t.runs.name} ALTER COLUMN seed TYPE BIGINT"))
    conn.execute(update(t.schema_info).where(t.schema_info.c.id == 1).values(version=t.SCHEMA_VERSION))


def _within_run(conn: Connection, table: Table, column: str) -> None:
    """Take the run's id off the column's values that begin with it: `a.lane0/r0/x/1` -> `r0/x/1`."""
    value, prefix = table.c[column], table.c.run.concat("/")
    conn.execute(
        update(table)
        .where(func.substr(value, 1, func.length(prefix)) == prefix)
        .values({column: func.substr(value, func.length(prefix) + 1)})
    )


def _rebuilt(conn: Connection, table: Table, **values: Callable[[Any], Any]) -> None:
    """Build `table` again in its current layout, its rows copied over, where its key has changed.

    For the layouts of version 10 (store.schema). `values` gives a column's value from the old
    table's columns where it is not simply the old column. A table keyed so already is left as it is.
    """
    old = Table(table.name, MetaData(), autoload_with=conn)
    if [c.name for c in old.primary_key.columns] == [c.name for c in table.primary_key.columns]:
        return
    for index in old.indexes:  # index names are the database's: the new table's take them over
        index.drop(conn)
    new = table.to_metadata(MetaData(), name=f"{table.name}_new")
    new.create(conn)
    names = [c.name for c in table.columns]
    conn.execute(insert(new).from_select(names, select(*(values[n](old.c) if n in values else old.c[n] for n in names))))
    old.drop(conn)
    conn.execute(text(f"ALTER TABLE {new.name} RENAME TO {table.name}"))
    if conn.dialect.name == "postgresql":  # the key keeps the name a freshly made table's would have
        conn.execute(text(f"ALTER TABLE {table.name} RENAME CONSTRAINT {new.name}_pkey TO {table.name}_pkey"))


def _sim_truth_out_of_proposals(conn: Connection) -> None:
    """Before version 11 a simulated proposal carried the simulator's truth in its record. The
    truth now lives in the simulator's notes, which older runs never wrote (their stats lose the
    `truth` block); the reference as first proposed stays, as `proposed_reference`."""
    rows = conn.execute(select(t.proposals.c.run, t.proposals.c.id, t.proposals.c.record)).all()
    for run, id_, record in rows:
        if not isinstance(record, dict) or "sim" not in record:
            continue
        record = dict(record)
        first = (record.pop("sim") or {}).get("proposed_reference")
        if first is not None and first != record.get("reference_answer"):
            record["proposed_reference"] = first
        conn.execute(
            update(t.proposals).where(t.proposals.c.run == run, t.proposals.c.id == id_).values(record=record)
        )


def _threads_to_uuids(conn: Connection) -> None:
    """Before version 5 a CLI run's checkpoints were under its name; LangGraph's server wants UUIDs."""
    from cadsynth.store import thread_id

    names = conn.execute(select(t.checkpoints.c.thread_id).distinct()).scalars().all()
    for name in names:
        if thread_id(name) != name:
            for table in (t.checkpoints, t.checkpoint_blobs, t.checkpoint_writes):
                conn.execute(update(table).where(table.c.thread_id == name).values(thread_id=thread_id(name)))


class SetUpOnce:
    """A store module's tables, set up (or checked) once however many of its calls ask at once:
    the first caller sets up, the rest wait for it rather than repeat it. `then` runs once on the
    same connection after the setup (the call cache reads its keys there)."""

    def __init__(self, engine: AsyncEngine, then: Callable[[AsyncConnection], Awaitable[None]] | None = None):
        self.engine, self.then = engine, then
        self.ready = False
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if self.ready:
            return
        async with self._lock:
            if not self.ready:
                async with self.engine.connect() as conn:
                    await conn.run_sync(setup_schema)
                    if self.then is not None:
                        await self.then(conn)
                self.ready = True
