"""LangGraph checkpoints in the store's SQL database, for SQLite and PostgreSQL, sync and async.

Three tables (see the checkpoint section of `store.schema`):

* ``cads_checkpoints``: one row per checkpoint. The serialized checkpoint keeps only small scalar
  channel values inline; the metadata is stored serialized, plus its JSON-representable keys as
  JSON so that `list(filter=...)` runs in SQL.
* ``cads_checkpoint_blobs``: every other channel value, once per (thread, namespace, channel,
  version). A step stores blobs only for the channels it changed (``new_versions``), so a large
  value that stays put costs nothing per step.
* ``cads_checkpoint_writes``: pending writes per (checkpoint, task, idx).

All database work is written once, as functions of a synchronous SQLAlchemy ``Connection``.
`SqlSaver` runs them on an ``Engine``; `AsyncSqlSaver` runs the same functions on an
``AsyncEngine`` through ``AsyncConnection.run_sync``, so the two differ only in how they reach the
database. On SQLite the write transactions of one engine are serialized in-process (LangGraph
saves the writes of parallel tasks concurrently), so they queue instead of failing with
"database is locked".
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from .schema import SCHEMA_VERSION, checkpoint_blobs, checkpoint_writes, checkpoints, schema_info
from .schema import metadata as all_tables

__all__ = [
    "AsyncSqlSaver",
    "SchemaVersionError",
    "SqlSaver",
    "UnsupportedDatabaseError",
    "ensure_schema",
]

C, B, W = checkpoints, checkpoint_blobs, checkpoint_writes
T = TypeVar("T")

# Scalars at most this long stay inside the checkpoint row; anything else becomes a blob.
_INLINE_STR_MAX = 256
# Rows per IN (...) list, well under SQLite's bound-parameter limit.
_CHUNK = 400
# Checkpoint rows fetched per round trip when `list` has to filter in Python or has no limit.
_PAGE = 100
_PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys LangGraph sets on threads whose graphs use a DeltaChannel.
_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")
# Any fixed 64-bit number: the advisory lock that serializes schema setup on PostgreSQL.
_SCHEMA_LOCK_KEY = 0x0CAD5_5C4E


class SchemaVersionError(RuntimeError):
    """The database was written by a newer cadsynth than this one."""


class UnsupportedDatabaseError(ValueError):
    """The saver runs on SQLite and PostgreSQL only."""


# --- schema ----------------------------------------------------------------------------------


def _stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(schema_info.name):
        return None
    return conn.execute(select(func.max(schema_info.c.version))).scalar()


def ensure_schema(conn: Connection) -> None:
    """Create the missing tables of `store.schema` and record SCHEMA_VERSION (if none is recorded).

    Raises SchemaVersionError, touching nothing, if the database records a newer version than this
    code. Takes a connection with no transaction open, and commits. Safe to run from several
    processes at once (an advisory lock on PostgreSQL, a retry on SQLite).
    """
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise UnsupportedDatabaseError(f"checkpoints need SQLite or PostgreSQL, not {name}")
    for attempt in range(3):
        try:
            with conn.begin():
                if name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
                found = _stored_version(conn)
                if found is not None and found > SCHEMA_VERSION:
                    url = conn.engine.url.render_as_string(hide_password=True)
                    raise SchemaVersionError(
                        f"database {url} has schema version {found}, newer than this cadsynth's "
                        f"{SCHEMA_VERSION}; upgrade cadsynth (or use another database)"
                    )
                all_tables.create_all(conn)
                if found is None:
                    conn.execute(
                        _insert_fn(name)(schema_info)
                        .values(id=1, version=SCHEMA_VERSION)
                        .on_conflict_do_nothing()
                    )
            return
        except DBAPIError:
            # Another process created a table between our check and our CREATE (SQLite has no
            # transactional DDL lock to wait on): look again.
            if attempt == 2:
                raise


_schema_ready: weakref.WeakSet[Engine] = weakref.WeakSet()


def _insert_fn(dialect: str) -> Callable[..., Any]:
    if dialect == "postgresql":
        return pg_dialect.insert
    if dialect == "sqlite":
        return sqlite_dialect.insert
    raise UnsupportedDatabaseError(f"checkpoints need SQLite or PostgreSQL, not {dialect}")


# --- per-engine write serialization (SQLite) ---------------------------------------------------

_thread_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_task_locks: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_locks_guard = threading.Lock()


def _thread_lock(engine: Engine) -> threading.Lock:
    with _locks_guard:
        lock = _thread_locks.get(engine)
        if lock is None:
            lock = _thread_locks[engine] = threading.Lock()
        return lock


def _task_lock(engine: Engine) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _locks_guard:
        entry = _task_locks.get(engine)
        if entry is None or entry[0] is not loop:
            entry = _task_locks[engine] = (loop, asyncio.Lock())
        return entry[1]


# --- what a put / put_writes stores -----------------------------------------------------------


@dataclass(slots=True)
class _PutPlan:
    blobs: list[dict[str, Any]]
    row: dict[str, Any]


@dataclass(slots=True)
class _WritesPlan:
    rows: list[dict[str, Any]]
    overwrite: bool


@dataclass(slots=True)
class _Decoded:
    """A checkpoint row decoded, waiting for its blobs and writes."""

    key: tuple[str, str, str]  # thread, ns, id
    parent: str | None
    checkpoint: dict[str, Any]
    metadata: CheckpointMetadata
    wanted: list[tuple[str, str]]  # (channel, version) still to load from blobs


def _inline(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and len(value) <= _INLINE_STR_MAX


def _json_projection(md: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata keys that JSON (and PostgreSQL's JSONB) can hold as they are."""
    out: dict[str, Any] = {}
    for key, value in md.items():
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        if "\\u0000" not in encoded:  # JSONB refuses NUL characters
            out[key] = value
    return out


def _json_contains(have: Any, want: Any) -> bool:
    """JSONB-style containment: dicts by subset, lists by members, scalars by JSON equality."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _json_contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, (list, tuple)):
        return isinstance(have, (list, tuple)) and all(
            any(_json_contains(h, w) for h in have) for w in want
        )
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(want, bool) and isinstance(have, bool) and want == have
    return have == want


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


_CP_COLS = (
    C.c.thread_id,
    C.c.checkpoint_ns,
    C.c.checkpoint_id,
    C.c.parent_checkpoint_id,
    C.c.type,
    C.c.checkpoint,
    C.c.metadata_type,
    C.c.metadata,
)


class _SqlSaverBase(BaseCheckpointSaver[str]):
    """Statements, row mapping and every database operation, as functions of a sync Connection."""

    def __init__(self, *, dialect: str, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.dialect = dialect
        insert = _insert_fn(dialect)
        pk_c = [C.c.thread_id, C.c.checkpoint_ns, C.c.checkpoint_id]
        up = insert(C)
        self._upsert_checkpoint = up.on_conflict_do_update(
            index_elements=pk_c,
            set_={
                name: up.excluded[name]
                for name in (
                    "parent_checkpoint_id",
                    "run_id",
                    "type",
                    "checkpoint",
                    "metadata_type",
                    "metadata",
                    "metadata_json",
                )
            },
        )
        self._insert_blobs = insert(B).on_conflict_do_nothing(
            index_elements=[B.c.thread_id, B.c.checkpoint_ns, B.c.channel, B.c.version]
        )
        w_pk = [W.c.thread_id, W.c.checkpoint_ns, W.c.checkpoint_id, W.c.task_id, W.c.idx]
        self._insert_writes = insert(W).on_conflict_do_nothing(index_elements=w_pk)
        uw = insert(W)
        self._upsert_writes = uw.on_conflict_do_update(
            index_elements=w_pk,
            set_={n: uw.excluded[n] for n in ("channel", "type", "blob", "task_path")},
        )
        self._insert = insert
        t, ns = bindparam("t"), bindparam("ns")
        self._q_by_id = select(*_CP_COLS).where(
            C.c.thread_id == t, C.c.checkpoint_ns == ns, C.c.checkpoint_id == bindparam("id")
        )
        self._q_latest = (
            select(*_CP_COLS)
            .where(C.c.thread_id == t, C.c.checkpoint_ns == ns)
            .order_by(C.c.checkpoint_id.desc())
            .limit(1)
        )
        self._q_blobs = select(B.c.channel, B.c.version, B.c.type, B.c.blob).where(
            B.c.thread_id == t,
            B.c.checkpoint_ns == ns,
            tuple_(B.c.channel, B.c.version).in_(bindparam("keys", expanding=True)),
        )
        self._q_writes = select(
            W.c.checkpoint_id, W.c.task_id, W.c.channel, W.c.type, W.c.blob, W.c.task_path, W.c.idx
        ).where(
            W.c.thread_id == t,
            W.c.checkpoint_ns == ns,
            W.c.checkpoint_id.in_(bindparam("ids", expanding=True)),
        )

    # -- versions ---------------------------------------------------------------------------

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """Zero-padded step counter plus a random fraction.

        The counter orders versions as strings; the fraction keeps two branches of a thread that
        reach the same counter (a fork, a replay) from sharing a blob row.
        """
        if current is None:
            step = 0
        elif isinstance(current, (int, float)):
            step = int(current)
        else:
            step = int(str(current).split(".", 1)[0])
        return f"{step + 1:032d}.{random.random():.16f}"

    # -- serialization (no I/O) -------------------------------------------------------------

    def _plan_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[_PutPlan, RunnableConfig]:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns") or ""
        parent = conf.get("checkpoint_id")
        inline: dict[str, Any] = {}
        blobs: list[dict[str, Any]] = []
        values = checkpoint["channel_values"]
        for channel, value in values.items():
            if _inline(value):
                inline[channel] = value
        for channel, version in new_versions.items():
            if channel in inline or channel not in values:
                continue
            kind, data = self.serde.dumps_typed(values[channel])
            blobs.append(
                {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "channel": channel,
                    "version": str(version),
                    "type": kind,
                    "blob": data,
                }
            )
        stored = {**checkpoint, "channel_values": inline}
        cp_type, cp_bytes = self.serde.dumps_typed(stored)
        md = get_serializable_checkpoint_metadata(config, metadata)
        md_type, md_bytes = self.serde.dumps_typed(md)
        run_id = md.get("run_id")
        row = {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": parent,
            "run_id": str(run_id) if run_id is not None else None,
            "type": cp_type,
            "checkpoint": cp_bytes,
            "metadata_type": md_type,
            "metadata": md_bytes,
            "metadata_json": _json_projection(md),
        }
        return _PutPlan(blobs, row), _config(thread_id, ns, checkpoint["id"])

    def _plan_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> _WritesPlan:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns") or ""
        checkpoint_id = conf["checkpoint_id"]
        rows = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            rows.append(
                {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                    "task_id": task_id,
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "channel": channel,
                    "type": kind,
                    "blob": data,
                    "task_path": task_path,
                }
            )
        # Special writes (errors, interrupts, ...) replace an earlier one of the same task; a
        # regular write is saved once, so a retried task cannot change what was recorded.
        overwrite = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        return _WritesPlan(rows, overwrite)

    def _decode(self, row: Any) -> _Decoded:
        checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
        values = checkpoint["channel_values"]
        wanted = [
            (channel, str(version))
            for channel, version in checkpoint["channel_versions"].items()
            if channel not in values
        ]
        return _Decoded(
            key=(row.thread_id, row.checkpoint_ns, row.checkpoint_id),
            parent=row.parent_checkpoint_id,
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed((row.metadata_type, row.metadata)),
            wanted=wanted,
        )

    def _versions_of(self, row: Any) -> Iterable[tuple[str, str]]:
        checkpoint = self.serde.loads_typed((row.type, row.checkpoint))
        return ((ch, str(v)) for ch, v in checkpoint["channel_versions"].items())

    # -- database operations, each on one sync Connection -----------------------------------

    def _op_put(self, conn: Connection, plan: _PutPlan) -> None:
        if plan.blobs:
            conn.execute(self._insert_blobs, plan.blobs)
        conn.execute(self._upsert_checkpoint, plan.row)

    def _op_put_writes(self, conn: Connection, plan: _WritesPlan) -> None:
        if plan.rows:
            conn.execute(self._upsert_writes if plan.overwrite else self._insert_writes, plan.rows)

    def _op_get_tuple(self, conn: Connection, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        params = {"t": str(conf["thread_id"]), "ns": conf.get("checkpoint_ns") or ""}
        if checkpoint_id := get_checkpoint_id(config):
            row = conn.execute(self._q_by_id, {**params, "id": checkpoint_id}).first()
        else:
            row = conn.execute(self._q_latest, params).first()
        if row is None:
            return None
        return self._load(conn, [self._decode(row)])[0]

    def _load(self, conn: Connection, decoded: list[_Decoded]) -> list[CheckpointTuple]:
        """Fetch the blobs and pending writes of decoded rows and build their tuples."""
        groups: dict[tuple[str, str], list[_Decoded]] = defaultdict(list)
        for d in decoded:
            groups[d.key[:2]].append(d)
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes | None]] = {}
        writes: dict[tuple[str, str, str], list[tuple[tuple[str, str, int], PendingWrite]]] = (
            defaultdict(list)
        )
        for (thread_id, ns), members in groups.items():
            params = {"t": thread_id, "ns": ns}
            wanted = sorted({w for d in members for w in d.wanted})
            for keys in _chunks(wanted):
                for r in conn.execute(self._q_blobs, {**params, "keys": list(keys)}):
                    blobs[(thread_id, ns, r.channel, r.version)] = (r.type, r.blob)
            ids = [d.key[2] for d in members]
            for chunk in _chunks(ids):
                for r in conn.execute(self._q_writes, {**params, "ids": list(chunk)}):
                    value = self.serde.loads_typed((r.type, r.blob))
                    writes[(thread_id, ns, r.checkpoint_id)].append(
                        ((r.task_path, r.task_id, r.idx), (r.task_id, r.channel, value))
                    )
        out = []
        for d in decoded:
            thread_id, ns, checkpoint_id = d.key
            values = d.checkpoint["channel_values"]
            for channel, version in d.wanted:
                found = blobs.get((thread_id, ns, channel, version))
                if found is not None and found[0] != "empty":
                    values[channel] = self.serde.loads_typed(found)
            # Python's order, not the database collation's: replays must follow writes_sort_key.
            pending = [w for _, w in sorted(writes.get(d.key, ()), key=lambda e: e[0])]
            out.append(
                CheckpointTuple(
                    config=_config(thread_id, ns, checkpoint_id),
                    checkpoint=d.checkpoint,
                    metadata=d.metadata,
                    parent_config=_config(thread_id, ns, d.parent) if d.parent else None,
                    pending_writes=pending,
                )
            )
        return out

    def _filter_clauses(
        self, filter: Mapping[str, Any] | None
    ) -> tuple[list[ColumnElement[bool]], dict[str, Any]]:
        """SQL conditions for the scalar items of a metadata filter, and the rest to check here."""
        clauses: list[ColumnElement[bool]] = []
        residual: dict[str, Any] = {}
        scalars: dict[str, Any] = {}
        for key, want in (filter or {}).items():
            scalar = want is None or isinstance(want, (str, bool, int, float))
            if scalar and (self.dialect == "postgresql" or ('"' not in key and "\\" not in key)):
                scalars[key] = want
            else:
                residual[key] = want
        if not scalars:
            return clauses, residual
        col = C.c.metadata_json
        if self.dialect == "postgresql":
            clauses.append(type_coerce(col, JSONB).contains(scalars))
            return clauses, residual
        for key, want in scalars.items():
            path = f'$."{key}"'
            kind = func.json_type(col, path)
            if want is None:
                clauses.append(kind == "null")
            elif isinstance(want, bool):
                clauses.append(kind == ("true" if want else "false"))
            elif isinstance(want, (int, float)):
                clauses.append(and_(kind.in_(("integer", "real")), func.json_extract(col, path) == want))
            else:
                clauses.append(and_(kind == "text", func.json_extract(col, path) == want))
        return clauses, residual

    def _list_query(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
    ) -> tuple[Any, dict[str, Any]]:
        where: list[ColumnElement[bool]] = []
        if config is not None:
            conf = config["configurable"]
            if conf.get("thread_id") is not None:
                where.append(C.c.thread_id == str(conf["thread_id"]))
            if conf.get("checkpoint_ns") is not None:
                where.append(C.c.checkpoint_ns == conf["checkpoint_ns"])
            if checkpoint_id := get_checkpoint_id(config):
                where.append(C.c.checkpoint_id == checkpoint_id)
        if before is not None and (before_id := get_checkpoint_id(before)):
            where.append(C.c.checkpoint_id < before_id)
        clauses, residual = self._filter_clauses(filter)
        where.extend(clauses)
        query = (
            select(*_CP_COLS)
            .where(*where)
            .order_by(C.c.checkpoint_id.desc(), C.c.thread_id, C.c.checkpoint_ns)
        )
        return query, residual

    def _op_list_page(
        self,
        conn: Connection,
        query: Any,
        after: tuple[str, str, str] | None,
        size: int | None,
    ) -> tuple[list[_Decoded], list[CheckpointTuple], tuple[str, str, str] | None]:
        """One page of `list`: rows past `after` in list order; returns the cursor for the next."""
        if after is not None:
            cid, tid, ns = after
            query = query.where(
                or_(
                    C.c.checkpoint_id < cid,
                    and_(
                        C.c.checkpoint_id == cid,
                        or_(C.c.thread_id > tid, and_(C.c.thread_id == tid, C.c.checkpoint_ns > ns)),
                    ),
                )
            )
        if size is not None:
            query = query.limit(size)
        rows = conn.execute(query).all()
        if not rows:
            return [], [], None
        decoded = [self._decode(r) for r in rows]
        last = rows[-1]
        cursor = (last.checkpoint_id, last.thread_id, last.checkpoint_ns)
        more = size is not None and len(rows) == size
        return decoded, [], cursor if more else None

    def _op_list_load(
        self,
        conn: Connection,
        query: Any,
        after: tuple[str, str, str] | None,
        size: int | None,
        residual: Mapping[str, Any],
    ) -> tuple[list[CheckpointTuple], tuple[str, str, str] | None]:
        decoded, _, cursor = self._op_list_page(conn, query, after, size)
        if residual:
            decoded = [
                d
                for d in decoded
                if all(k in d.metadata and _json_contains(d.metadata[k], v) for k, v in residual.items())
            ]
        return (self._load(conn, decoded) if decoded else []), cursor

    def _list_plan(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> tuple[Any, dict[str, Any], int | None]:
        query, residual = self._list_query(config, filter, before)
        if limit is not None and not residual:
            size: int | None = int(limit)
        else:
            size = _PAGE if limit is None or residual else int(limit)
        return query, residual, size

    def _op_delete_threads(self, conn: Connection, thread_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(thread_ids)):
            for table in (W, B, C):
                conn.execute(delete(table).where(table.c.thread_id.in_(list(chunk))))

    def _op_copy_thread(self, conn: Connection, source: str, target: str) -> None:
        for table in (C, B, W):
            columns = [c.name for c in table.c]
            picked = [
                literal(target, table.c.thread_id.type).label("thread_id") if name == "thread_id" else table.c[name]
                for name in columns
            ]
            conn.execute(
                self._insert(table)
                .from_select(columns, select(*picked).where(table.c.thread_id == source))
                .on_conflict_do_nothing()
            )

    def _op_delete_for_runs(self, conn: Connection, run_ids: Sequence[str]) -> None:
        doomed: list[Any] = []
        for chunk in _chunks(list(run_ids)):
            doomed += conn.execute(
                select(
                    C.c.thread_id,
                    C.c.checkpoint_ns,
                    C.c.checkpoint_id,
                    C.c.parent_checkpoint_id,
                    C.c.type,
                    C.c.checkpoint,
                ).where(C.c.run_id.in_(list(chunk)))
            ).all()
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in doomed:
            groups[(row.thread_id, row.checkpoint_ns)].append(row)
        for (thread_id, ns), rows in groups.items():
            parent_of = {r.checkpoint_id: r.parent_checkpoint_id for r in rows}

            def survivor(cid: str | None) -> str | None:
                while cid is not None and cid in parent_of:
                    cid = parent_of[cid]
                return cid

            # Children of a deleted checkpoint hang on to its nearest surviving ancestor.
            relink = [
                {"t": thread_id, "ns": ns, "old": cid, "new": survivor(parent)}
                for cid, parent in parent_of.items()
            ]
            conn.execute(
                update(C)
                .where(
                    C.c.thread_id == bindparam("t"),
                    C.c.checkpoint_ns == bindparam("ns"),
                    C.c.parent_checkpoint_id == bindparam("old"),
                )
                .values(parent_checkpoint_id=bindparam("new")),
                relink,
            )
            freed = {v for r in rows for v in self._versions_of(r)}
            self._delete_checkpoints(conn, thread_id, ns, list(parent_of))
            self._collect_blobs(conn, thread_id, ns, freed)

    def _delete_checkpoints(self, conn: Connection, thread_id: str, ns: str, ids: list[str]) -> None:
        for chunk in _chunks(ids):
            for table in (W, C):
                conn.execute(
                    delete(table).where(
                        table.c.thread_id == thread_id,
                        table.c.checkpoint_ns == ns,
                        table.c.checkpoint_id.in_(list(chunk)),
                    )
                )

    def _collect_blobs(
        self, conn: Connection, thread_id: str, ns: str, freed: set[tuple[str, str]]
    ) -> None:
        """Delete the blobs among `freed` that no remaining checkpoint of (thread, ns) uses."""
        if not freed:
            return
        rows = conn.execute(
            select(C.c.type, C.c.checkpoint).where(C.c.thread_id == thread_id, C.c.checkpoint_ns == ns)
        )
        used = {v for r in rows for v in self._versions_of(r)}
        garbage = sorted(freed - used)
        for chunk in _chunks(garbage):
            conn.execute(
                delete(B).where(
                    B.c.thread_id == thread_id,
                    B.c.checkpoint_ns == ns,
                    tuple_(B.c.channel, B.c.version).in_(list(chunk)),
                )
            )

    def _has_key(self, key: str) -> ColumnElement[bool]:
        col = C.c.metadata_json
        if self.dialect == "postgresql":
            return type_coerce(col, JSONB).has_key(key)
        return func.json_type(col, f'$."{key}"').is_not(None)

    def _op_refuse_delta_threads(self, conn: Connection, thread_ids: Sequence[str]) -> None:
        found: set[str] = set()
        for chunk in _chunks(list(thread_ids)):
            found.update(
                conn.execute(
                    select(C.c.thread_id)
                    .where(C.c.thread_id.in_(list(chunk)), or_(*(self._has_key(k) for k in _DELTA_KEYS)))
                    .distinct()
                ).scalars()
            )
        if found:
            raise NotImplementedError(
                "keep_latest can't prune threads whose graph uses a DeltaChannel (their latest "
                f"state is rebuilt from older checkpoints): {', '.join(sorted(found))}"
            )

    def _op_keep_latest(self, conn: Connection, thread_id: str) -> None:
        """Keep the newest checkpoint of each namespace of a thread, its writes and blobs.

        Deletes only rows read here, so checkpoints a run saves meanwhile survive. A subgraph
        call's namespace ("node:task") goes whole once the root checkpoint it started from is
        pruned; a namespace without a task id (a subgraph with its own checkpointer) keeps its
        latest checkpoint like the root.
        """
        self._op_refuse_delta_threads(conn, [thread_id])
        rows = conn.execute(
            select(
                C.c.checkpoint_ns,
                C.c.checkpoint_id,
                C.c.type,
                C.c.checkpoint,
                C.c.metadata_json,
            ).where(C.c.thread_id == thread_id)
        ).all()
        by_ns: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_ns[r.checkpoint_ns].append(r)
        heads = {ns: max(rs, key=lambda r: r.checkpoint_id) for ns, rs in by_ns.items()}
        root_ids = {r.checkpoint_id for r in by_ns.get("", ())}
        root_head = heads[""].checkpoint_id if "" in heads else None
        for ns, rs in by_ns.items():
            head = heads[ns]
            started_from = ((head.metadata_json or {}).get("parents") or {}).get("")
            if ":" in ns and started_from in root_ids and started_from != root_head:
                for table in (W, B, C):
                    conn.execute(
                        delete(table).where(table.c.thread_id == thread_id, table.c.checkpoint_ns == ns)
                    )
                continue
            unkept = [r for r in rs if r.checkpoint_id != head.checkpoint_id]
            if not unkept:
                continue
            freed = {v for r in unkept for v in self._versions_of(r)}
            self._delete_checkpoints(conn, thread_id, ns, [r.checkpoint_id for r in unkept])
            conn.execute(
                update(C)
                .where(
                    C.c.thread_id == thread_id,
                    C.c.checkpoint_ns == ns,
                    C.c.checkpoint_id == head.checkpoint_id,
                )
                .values(parent_checkpoint_id=None)
            )
            self._collect_blobs(conn, thread_id, ns, freed)


def _check_prune_args(thread_ids: Sequence[str], strategy: str) -> list[str]:
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread IDs, not one str")
    if strategy not in _PRUNE_STRATEGIES:
        raise ValueError(f"unknown prune strategy {strategy!r}; use one of {_PRUNE_STRATEGIES}")
    return [str(t) for t in thread_ids]


class SqlSaver(_SqlSaverBase):
    """Checkpoint saver on a synchronous SQLAlchemy Engine (SQLite or PostgreSQL).

    The async methods run the sync ones in a worker thread, so the saver also serves async
    graphs; prefer `AsyncSqlSaver` there.
    """

    def __init__(self, engine: Engine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        self._write_lock: AbstractContextManager[Any] = (
            _thread_lock(engine) if self.dialect == "sqlite" else nullcontext()
        )

    def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.engine in _schema_ready:
            return
        with self.engine.connect() as conn:
            ensure_schema(conn)
        _schema_ready.add(self.engine)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        self.setup()
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        self.setup()
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._reading() as conn:
            return self._op_get_tuple(conn, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        query, residual, size = self._list_plan(config, filter, before, limit)
        left = limit
        after: tuple[str, str, str] | None = None
        while left is None or left > 0:
            with self._reading() as conn:
                page, after = self._op_list_load(conn, query, after, size, residual)
            for tup in page[:left] if left is not None else page:
                yield tup
            if left is not None:
                left -= min(left, len(page))
            if after is None:
                return

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        plan, next_config = self._plan_put(config, checkpoint, metadata, new_versions)
        with self._writing() as conn:
            self._op_put(conn, plan)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        plan = self._plan_writes(config, writes, task_id, task_path)
        with self._writing() as conn:
            self._op_put_writes(conn, plan)

    def delete_thread(self, thread_id: str) -> None:
        with self._writing() as conn:
            self._op_delete_threads(conn, [str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        with self._writing() as conn:
            self._op_delete_for_runs(conn, [str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        with self._writing() as conn:
            self._op_copy_thread(conn, str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ids = _check_prune_args(thread_ids, strategy)
        if not ids:
            return
        if strategy == "delete":
            with self._writing() as conn:
                self._op_delete_threads(conn, ids)
            return
        with self._reading() as conn:
            self._op_refuse_delta_threads(conn, ids)
        for thread_id in ids:
            with self._writing() as conn:
                self._op_keep_latest(conn, thread_id)

    # async forms: the sync ones in a worker thread

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        it = self.list(config, filter=filter, before=before, limit=limit)
        sentinel = object()
        while (tup := await asyncio.to_thread(next, it, sentinel)) is not sentinel:
            yield tup  # type: ignore[misc]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


class AsyncSqlSaver(_SqlSaverBase):
    """Checkpoint saver on an async SQLAlchemy AsyncEngine (aiosqlite or psycopg).

    The sync methods hand their work to the event loop the saver runs on, so they may be called
    from other threads (e.g. `graph.get_state` in a sync helper), never from that loop itself.
    """

    def __init__(self, engine: AsyncEngine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    async def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self.engine.sync_engine in _schema_ready:
            return
        async with self.engine.connect() as conn:
            await conn.run_sync(ensure_schema)
        _schema_ready.add(self.engine.sync_engine)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        await self.setup()
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        await self.setup()
        lock = _task_lock(self.engine.sync_engine) if self.dialect == "sqlite" else None
        async with lock if lock is not None else nullcontext():  # type: ignore[attr-defined]
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._read(self._op_get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query, residual, size = self._list_plan(config, filter, before, limit)
        left = limit
        after: tuple[str, str, str] | None = None
        while left is None or left > 0:
            page, after = await self._read(self._op_list_load, query, after, size, residual)
            for tup in page[:left] if left is not None else page:
                yield tup
            if left is not None:
                left -= min(left, len(page))
            if after is None:
                return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        plan, next_config = self._plan_put(config, checkpoint, metadata, new_versions)
        await self._write(self._op_put, plan)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        plan = self._plan_writes(config, writes, task_id, task_path)
        await self._write(self._op_put_writes, plan)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._write(self._op_delete_threads, [str(thread_id)])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self._write(self._op_delete_for_runs, [str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._write(self._op_copy_thread, str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ids = _check_prune_args(thread_ids, strategy)
        if not ids:
            return
        if strategy == "delete":
            await self._write(self._op_delete_threads, ids)
            return
        await self._read(self._op_refuse_delta_threads, ids)
        for thread_id in ids:
            await self._write(self._op_keep_latest, thread_id)

    # sync forms: run on the saver's event loop from another thread

    def _on_loop(self, coro_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or self.loop.is_closed():
            raise RuntimeError(
                "AsyncSqlSaver's sync methods need the event loop it runs on; use it (or "
                "`await saver.setup()`) inside that loop first, or use SqlSaver"
            )
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "synchronous AsyncSqlSaver calls from its own event loop would block it; use the "
                "a* methods (e.g. `await graph.aget_state(...)`) or call from another thread"
            )
        return asyncio.run_coroutine_threadsafe(coro_fn(*args, **kwargs), self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._on_loop(self.aget_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._on_loop(collect)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._on_loop(self.aput, config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._on_loop(self.aput_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._on_loop(self.adelete_thread, thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._on_loop(self.adelete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._on_loop(self.acopy_thread, source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._on_loop(self.aprune, thread_ids, strategy=strategy)
