"""LangGraph checkpoints in the store's SQL database, for SQLite and PostgreSQL, sync and async.

Three tables (see the checkpoint section of `store.schema`):

* ``cads_checkpoints``: one row per checkpoint. The serialized checkpoint keeps only small scalar
  channel values inline; the metadata is stored serialized, plus its JSON-representable keys as
  JSON so that `list(filter=...)` runs in SQL.
* ``cads_checkpoint_blobs``: every other channel value, once per (thread, namespace, channel,
  version). A step stores blobs only for the channels it changed (``new_versions``), so a large
  value that stays put costs nothing per step.
* ``cads_checkpoint_writes``: pending writes per (checkpoint, task, idx).

All database work is written once, as functions of a synchronous SQLAlchemy ``Connection``
(the ``_op_*`` methods); the savers differ only in how they reach the database:

* `SqlSaver` runs them on an ``Engine`` in the calling thread.
* `AsyncSqlSaver` on PostgreSQL runs them on the ``AsyncEngine`` in one greenlet hop per
  operation (the mechanism of ``AsyncConnection.run_sync``: psycopg's non-blocking I/O under sync
  code). On a SQLite file it runs them on a pysqlite engine for the same file, in one worker
  thread of its own: SQLite I/O blocks in-process whatever the driver (aiosqlite is a thread
  too), and one thread hop per operation beats aiosqlite's several per statement.

Round trips: `get_tuple` and each page of `list` are one statement (the checkpoint rows, their
blobs and their pending writes, UNION ALL). On PostgreSQL `put` and `put_writes` are one
statement each too (rows travel as arrays; `put` adds its blobs in a CTE), and they and the reads
run on an autocommit twin of the engine, with no BEGIN/COMMIT. Other writes are transactions.

On SQLite the write transactions of a saver are serialized in-process (LangGraph saves the
writes of parallel tasks concurrently), so they queue instead of failing with "database is
locked".
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import threading
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
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
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    LargeBinary,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CompoundSelect, Select
from sqlalchemy.util import greenlet_spawn

from .db import sync_engine
from . import migrate
from .migrate import SchemaVersionError
from .schema import checkpoint_blobs, checkpoint_writes, checkpoints

__all__ = [
    "AsyncSqlSaver",
    "SchemaVersionError",
    "SqlSaver",
    "UnsupportedDatabaseError",
    "setup_schema",
]

C, B, W = checkpoints, checkpoint_blobs, checkpoint_writes
T = TypeVar("T")
E = TypeVar("E", Engine, AsyncEngine)

# Scalars at most this long stay inside the checkpoint row; anything else becomes a blob.
_INLINE_STR_MAX = 256
# Rows per IN (...) list, well under SQLite's bound-parameter limit.
_CHUNK = 400
# Checkpoint rows fetched per round trip when `list` has to filter in Python or has no limit.
_PAGE = 100
_PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys LangGraph sets on threads whose graphs use a DeltaChannel.
_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")


class UnsupportedDatabaseError(ValueError):
    """The saver runs on SQLite and PostgreSQL only."""


# --- schema ----------------------------------------------------------------------------------


def setup_schema(conn: Connection) -> None:
    """`store.migrate.setup_schema` (locked, version-checked) on a backend the saver supports."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise UnsupportedDatabaseError(f"checkpoints need SQLite or PostgreSQL, not {name}")
    migrate.setup_schema(conn)


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
class _ListPlan:
    shape: tuple[tuple[Any, ...], ...]
    params: dict[str, Any]
    residual: dict[str, Any]
    size: int


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


def _matches(metadata: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(k in metadata and _json_contains(metadata[k], v) for k, v in filter.items())


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


def _blob_keys(versions: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """The (channel, version) blob keys a checkpoint's channel_versions name."""
    return ((channel, str(version)) for channel, version in (versions or {}).items())


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
                    "channel_versions",
                    "metadata_type",
                    "metadata",
                    "metadata_json",
                )
            },
        )
        self._insert_blobs = insert(B).on_conflict_do_nothing(
            index_elements=[B.c.thread_id, B.c.checkpoint_ns, B.c.channel, B.c.version]
        )
        w_pk = self._writes_pk = [W.c.thread_id, W.c.checkpoint_ns, W.c.checkpoint_id, W.c.task_id, W.c.idx]
        self._insert_writes = insert(W).on_conflict_do_nothing(index_elements=w_pk)
        uw = insert(W)
        self._upsert_writes = uw.on_conflict_do_update(
            index_elements=w_pk,
            set_={n: uw.excluded[n] for n in ("channel", "type", "blob", "task_path")},
        )
        self._insert = insert
        # PostgreSQL: `put` and `put_writes` are one statement each, so they need no transaction.
        self.single_statement_writes = dialect == "postgresql"
        if dialect == "postgresql":
            self._pg_statements()
        t, ns = bindparam("t", type_=Text), bindparam("ns", type_=Text)
        by_key = (C.c.thread_id == t, C.c.checkpoint_ns == ns)
        self._q_by_id = self._read_statement(
            select(C).where(*by_key, C.c.checkpoint_id == bindparam("id"))
        )
        self._q_latest = self._read_statement(
            select(C).where(*by_key).order_by(C.c.checkpoint_id.desc()).limit(1)
        )
        self._list_statements: dict[Any, CompoundSelect[Any]] = {}

    def _read_statement(self, chosen: Select[Any]) -> CompoundSelect[Any]:
        """One statement returning checkpoint rows and everything needed to build their tuples.

        `chosen` selects checkpoint rows. The result has kind 'c' rows for them, 'b' rows for the
        blobs their channel_versions name (each blob once, however many checkpoints share it) and
        'w' rows for their pending writes, in uniform columns:

        ====  =============  ==============  ==============  =======  ========  ==========
        kind  a              b               c               d        blob      blob2
        ====  =============  ==============  ==============  =======  ========  ==========
        c     checkpoint_id  parent id       metadata_type   --       checkpt.  metadata
        b     channel        version         --              --       blob      --
        w     checkpoint_id  task_id         task_path       channel  blob      --
        ====  =============  ==============  ==============  =======  ========  ==========
        """
        head = chosen.cte("head")
        each = getattr(func, "jsonb_each_text" if self.dialect == "postgresql" else "json_each")
        versions = each(head.c.channel_versions).table_valued("key", "value").alias("v")
        wanted = (
            select(
                head.c.thread_id.label("t"),
                head.c.checkpoint_ns.label("ns"),
                versions.c.key.label("ch"),
                cast(versions.c.value, Text).label("ver"),
            )
            .select_from(head.join(versions, true()))
            .distinct()
            .cte("wanted")
        )
        none_text = literal_column("NULL", Text)
        none_bytes = literal_column("NULL", LargeBinary)
        zero = literal_column("0", Integer)
        rows = select(
            literal_column("'c'", Text).label("kind"),
            head.c.thread_id,
            head.c.checkpoint_ns,
            head.c.checkpoint_id.label("a"),
            head.c.parent_checkpoint_id.label("b"),
            head.c.metadata_type.label("c"),
            none_text.label("d"),
            head.c.type,
            head.c.checkpoint.label("blob"),
            head.c.metadata.label("blob2"),
            zero.label("idx"),
        )
        # One primary-key probe per wanted blob, whatever the planner guesses of the sizes (it
        # takes json_each for 100 rows, and would hash-join a seq scan of all blobs): on
        # PostgreSQL a LATERAL subquery that LIMIT keeps from being flattened into a join; SQLite
        # plans the probe by itself.
        match = and_(
            B.c.thread_id == wanted.c.t,
            B.c.checkpoint_ns == wanted.c.ns,
            B.c.channel == wanted.c.ch,
            B.c.version == wanted.c.ver,
        )
        if self.dialect == "postgresql":
            found: Any = select(B).where(match).limit(1).lateral("found")
            source: Any = wanted.join(found, true())
        else:
            found, source = B, wanted.join(B, match)
        blobs = select(
            literal_column("'b'", Text),
            found.c.thread_id,
            found.c.checkpoint_ns,
            found.c.channel,
            found.c.version,
            none_text,
            none_text,
            found.c.type,
            found.c.blob,
            none_bytes,
            zero,
        ).select_from(source)
        writes = select(
            literal_column("'w'", Text),
            W.c.thread_id,
            W.c.checkpoint_ns,
            W.c.checkpoint_id,
            W.c.task_id,
            W.c.task_path,
            W.c.channel,
            W.c.type,
            W.c.blob,
            none_bytes,
            W.c.idx,
        ).select_from(
            head.join(
                W,
                and_(
                    W.c.thread_id == head.c.thread_id,
                    W.c.checkpoint_ns == head.c.checkpoint_ns,
                    W.c.checkpoint_id == head.c.checkpoint_id,
                ),
            )
        )
        return union_all(rows, blobs, writes)

    def _pg_statements(self) -> None:
        """Fixed-shape statements for PostgreSQL's `put` and `put_writes`.

        Rows travel as arrays (`INSERT ... SELECT FROM unnest(...)`), so one cached, server-
        prepared statement serves any number of rows, in one round trip, atomically.
        """

        def arrays(prefix: str, **types: Any) -> Any:
            return (
                func.unnest(*(bindparam(f"{prefix}{n}", type_=ARRAY(t)) for n, t in types.items()))
                .table_valued(*types)
                .render_derived(name=prefix.rstrip("_"))
            )

        blobs = arrays("b_", channel=Text, version=Text, type=Text, blob=LargeBinary)
        new_blobs = (
            pg_dialect.insert(B)
            .from_select(
                ["thread_id", "checkpoint_ns", "channel", "version", "type", "blob"],
                select(
                    bindparam("b_thread", type_=Text),
                    bindparam("b_ns", type_=Text),
                    blobs.c.channel,
                    blobs.c.version,
                    blobs.c.type,
                    blobs.c.blob,
                ),
            )
            .on_conflict_do_nothing(index_elements=[B.c.thread_id, B.c.checkpoint_ns, B.c.channel, B.c.version])
            .cte("new_blobs")
        )
        # WITH new_blobs AS (INSERT INTO blobs ... ON CONFLICT DO NOTHING) INSERT INTO checkpoints ...
        self._pg_put = self._upsert_checkpoint.add_cte(new_blobs)
        writes = arrays("w_", idx=Integer, channel=Text, type=Text, blob=LargeBinary)
        insert_writes = pg_dialect.insert(W).from_select(
            ["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel", "type", "blob"],
            select(
                bindparam("w_thread", type_=Text),
                bindparam("w_ns", type_=Text),
                bindparam("w_checkpoint", type_=Text),
                bindparam("w_task", type_=Text),
                bindparam("w_path", type_=Text),
                writes.c.idx,
                writes.c.channel,
                writes.c.type,
                writes.c.blob,
            ),
        )
        self._pg_insert_writes = insert_writes.on_conflict_do_nothing(index_elements=self._writes_pk)
        self._pg_upsert_writes = insert_writes.on_conflict_do_update(
            index_elements=self._writes_pk,
            set_={n: insert_writes.excluded[n] for n in ("channel", "type", "blob", "task_path")},
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
            "channel_versions": dict(checkpoint["channel_versions"]),
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
        # regular write is saved once, so a retried task cannot change what was recorded. The same
        # holds inside one call (two writes of one special channel share an idx): last or first.
        overwrite = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        by_idx: dict[int, dict[str, Any]] = {}
        for row in rows:
            if overwrite or row["idx"] not in by_idx:
                by_idx[row["idx"]] = row
        return _WritesPlan(list(by_idx.values()), overwrite)

    def _assemble(self, rows: Iterable[Any]) -> list[CheckpointTuple]:
        """Tuples from the rows of a `_read_statement`, newest checkpoint first."""
        loads = self.serde.loads_typed
        heads: list[tuple[Any, ...]] = []
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes]] = {}
        writes: dict[tuple[str, str, str], list[tuple[Any, ...]]] = defaultdict(list)
        for kind, thread_id, ns, a, b, c, d, type_, blob, blob2, idx in rows:
            if kind == "c":
                heads.append((a, thread_id, ns, b, c, type_, blob, blob2))
            elif kind == "b":
                blobs[(thread_id, ns, a, b)] = (type_, blob)
            else:  # sorted by writes_sort_key (task_path, task_id, idx) below
                writes[(thread_id, ns, a)].append((c, b, idx, d, type_, blob))
        # List order. Python's string order is the database's: keys compare bytewise (store.schema).
        heads.sort(key=lambda h: (h[1], h[2]))
        heads.sort(key=lambda h: h[0], reverse=True)
        out = []
        for checkpoint_id, thread_id, ns, parent, md_type, cp_type, cp_bytes, md_bytes in heads:
            checkpoint = loads((cp_type, cp_bytes))
            values = checkpoint["channel_values"]
            for channel, version in checkpoint["channel_versions"].items():
                if channel not in values:
                    found = blobs.get((thread_id, ns, channel, str(version)))
                    if found is not None and found[0] != "empty":
                        values[channel] = loads(found)
            # Python's order, not the database's: a replay must follow writes_sort_key.
            pending = writes.get((thread_id, ns, checkpoint_id), [])
            pending.sort(key=lambda w: w[:3])
            out.append(
                CheckpointTuple(
                    config=_config(thread_id, ns, checkpoint_id),
                    checkpoint=checkpoint,
                    metadata=loads((md_type, md_bytes)),
                    parent_config=_config(thread_id, ns, parent) if parent else None,
                    pending_writes=[(task_id, channel, loads((t, v))) for _, task_id, _, channel, t, v in pending],
                )
            )
        return out

    def _op_put(self, conn: Connection, plan: _PutPlan) -> None:
        if self.single_statement_writes:
            row = plan.row
            params = {
                **row,
                "b_thread": row["thread_id"],
                "b_ns": row["checkpoint_ns"],
                "b_channel": [b["channel"] for b in plan.blobs],
                "b_version": [b["version"] for b in plan.blobs],
                "b_type": [b["type"] for b in plan.blobs],
                "b_blob": [b["blob"] for b in plan.blobs],
            }
            conn.execute(self._pg_put, params)
            return
        if plan.blobs:
            conn.execute(self._insert_blobs, plan.blobs)
        conn.execute(self._upsert_checkpoint, plan.row)

    def _op_put_writes(self, conn: Connection, plan: _WritesPlan) -> None:
        if not plan.rows:
            return
        if self.single_statement_writes:
            first = plan.rows[0]
            params = {
                "w_thread": first["thread_id"],
                "w_ns": first["checkpoint_ns"],
                "w_checkpoint": first["checkpoint_id"],
                "w_task": first["task_id"],
                "w_path": first["task_path"],
                "w_idx": [r["idx"] for r in plan.rows],
                "w_channel": [r["channel"] for r in plan.rows],
                "w_type": [r["type"] for r in plan.rows],
                "w_blob": [r["blob"] for r in plan.rows],
            }
            conn.execute(self._pg_upsert_writes if plan.overwrite else self._pg_insert_writes, params)
            return
        conn.execute(self._upsert_writes if plan.overwrite else self._insert_writes, plan.rows)

    def _op_get_tuple(self, conn: Connection, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        params = {"t": str(conf["thread_id"]), "ns": conf.get("checkpoint_ns") or ""}
        if checkpoint_id := get_checkpoint_id(config):
            found = self._assemble(conn.execute(self._q_by_id, {**params, "id": checkpoint_id}))
        else:
            found = self._assemble(conn.execute(self._q_latest, params))
        return found[0] if found else None

    # -- list -------------------------------------------------------------------------------
    #
    # A `list` call is described by a shape (which conditions apply; hashable) and the values
    # for them. Statements are built once per shape and reused: building the read statement
    # costs more than running it on SQLite.

    def _list_plan(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> _ListPlan:
        shape: list[tuple[Any, ...]] = []
        params: dict[str, Any] = {}
        if config is not None:
            conf = config["configurable"]
            if conf.get("thread_id") is not None:
                shape.append(("thread",))
                params["l_thread"] = str(conf["thread_id"])
            if conf.get("checkpoint_ns") is not None:
                shape.append(("ns",))
                params["l_ns"] = conf["checkpoint_ns"]
            if checkpoint_id := get_checkpoint_id(config):
                shape.append(("id",))
                params["l_id"] = checkpoint_id
        if before is not None and (before_id := get_checkpoint_id(before)):
            shape.append(("before",))
            params["l_before"] = before_id
        residual: dict[str, Any] = {}
        scalars: dict[str, Any] = {}
        for key, want in (filter or {}).items():
            scalar = want is None or isinstance(want, (str, bool, int, float))
            if scalar and (self.dialect == "postgresql" or ('"' not in key and "\\" not in key)):
                scalars[key] = want
            else:
                residual[key] = want
        if scalars and self.dialect == "postgresql":
            shape.append(("contains",))
            params["l_contains"] = scalars
        else:
            for i, (key, want) in enumerate(scalars.items()):
                if want is None or isinstance(want, bool):
                    shape.append(("json_type", key, "null" if want is None else str(want).lower()))
                    continue
                shape.append(("json_value", key, "text" if isinstance(want, str) else "number", i))
                params[f"l_v{i}"] = want
        # The limit itself when SQL does all the filtering, else pages of _PAGE rows.
        size = int(limit) if limit is not None and not residual else _PAGE
        return _ListPlan(tuple(shape), params, residual, size)

    def _list_statement(self, shape: tuple[tuple[Any, ...], ...], paged: bool) -> CompoundSelect[Any]:
        key = (shape, paged)
        stmt = self._list_statements.get(key)
        if stmt is not None:
            return stmt
        col = C.c.metadata_json
        where: list[ColumnElement[bool]] = []
        for item in shape:
            kind = item[0]
            if kind == "thread":
                where.append(C.c.thread_id == bindparam("l_thread"))
            elif kind == "ns":
                where.append(C.c.checkpoint_ns == bindparam("l_ns"))
            elif kind == "id":
                where.append(C.c.checkpoint_id == bindparam("l_id"))
            elif kind == "before":
                where.append(C.c.checkpoint_id < bindparam("l_before"))
            elif kind == "contains":  # PostgreSQL: metadata_json @> {...}
                where.append(type_coerce(col, JSONB).contains(bindparam("l_contains", type_=JSONB)))
            elif kind == "json_type":  # SQLite: null / true / false, by JSON type
                where.append(func.json_type(col, f'$."{item[1]}"') == item[2])
            else:  # SQLite: a string or a number, by type and value
                path = f'$."{item[1]}"'
                types = ("text",) if item[2] == "text" else ("integer", "real")
                where.append(
                    and_(
                        func.json_type(col, path).in_(types),
                        func.json_extract(col, path) == bindparam(f"l_v{item[3]}"),
                    )
                )
        if paged:  # keyset: rows after the last one of the previous page, in list order
            cid, tid = bindparam("l_after_id", type_=Text), bindparam("l_after_thread", type_=Text)
            where.append(
                or_(
                    C.c.checkpoint_id < cid,
                    and_(
                        C.c.checkpoint_id == cid,
                        or_(
                            C.c.thread_id > tid,
                            and_(C.c.thread_id == tid, C.c.checkpoint_ns > bindparam("l_after_ns")),
                        ),
                    ),
                )
            )
        query = (
            select(C)
            .where(*where)
            .order_by(C.c.checkpoint_id.desc(), C.c.thread_id, C.c.checkpoint_ns)
            .limit(bindparam("l_limit"))
        )
        stmt = self._read_statement(query)
        if len(self._list_statements) >= 256:
            self._list_statements.clear()  # only odd filter keys could grow it
        self._list_statements[key] = stmt
        return stmt

    def _op_list_load(
        self, conn: Connection, plan: _ListPlan, after: tuple[str, str, str] | None
    ) -> tuple[list[CheckpointTuple], tuple[str, str, str] | None]:
        """One page of `list`: the tuples after `after` in list order (filtered by the plan's
        residual), and the cursor for the next page, None when this one was the last."""
        params = {**plan.params, "l_limit": plan.size}
        if after is not None:
            params["l_after_id"], params["l_after_thread"], params["l_after_ns"] = after
        page = self._assemble(conn.execute(self._list_statement(plan.shape, after is not None), params))
        cursor = None
        if len(page) == plan.size:
            last = page[-1].config["configurable"]
            cursor = (last["checkpoint_id"], last["thread_id"], last["checkpoint_ns"])
        if plan.residual:
            page = [t for t in page if _matches(t.metadata, plan.residual)]
        return page, cursor

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
                    C.c.channel_versions,
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
            freed = {v for r in rows for v in _blob_keys(r.channel_versions)}
            self._delete_checkpoints(conn, thread_id, ns, list(parent_of))
            self._collect_blobs(conn, thread_id, ns, freed)

    def _delete_checkpoints(self, conn: Connection, thread_id: str, ns: str, ids: list[str], tables: tuple[Table, ...] = (W, C)) -> None:
        for chunk in _chunks(ids):
            for table in tables:
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
        used = {
            v
            for (versions,) in conn.execute(
                select(C.c.channel_versions).where(C.c.thread_id == thread_id, C.c.checkpoint_ns == ns)
            )
            for v in _blob_keys(versions)
        }
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

    def _op_thin(self, conn: Connection, thread_id: str, after: str, before: str) -> None:
        """Delete the root checkpoints strictly between two kept ones, with their writes and the
        blobs no kept checkpoint uses; `before`'s parent becomes `after`. Checkpoint ids are
        time-ordered (uuid6), so "between" is a range.

        `after`'s own writes go too: they are the results of the step that followed it, which the
        checkpoints deleted here carried on from. Resumed or forked from `after`, that step runs
        again, as it does from any checkpoint saved before its step."""
        rows = conn.execute(
            select(C.c.checkpoint_id, C.c.channel_versions).where(
                C.c.thread_id == thread_id, C.c.checkpoint_ns == "", C.c.checkpoint_id > after, C.c.checkpoint_id < before
            )
        ).all()
        if not rows:
            return
        self._delete_checkpoints(conn, thread_id, "", [after], tables=(W,))
        self._delete_checkpoints(conn, thread_id, "", [r.checkpoint_id for r in rows])
        conn.execute(
            update(C)
            .where(C.c.thread_id == thread_id, C.c.checkpoint_ns == "", C.c.checkpoint_id == before)
            .values(parent_checkpoint_id=after)
        )
        self._collect_blobs(conn, thread_id, "", {v for r in rows for v in _blob_keys(r.channel_versions)})

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
                C.c.channel_versions,
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
            freed = {v for r in unkept for v in _blob_keys(r.channel_versions)}
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


def _autocommit_twin(engine: E) -> E:
    """The same engine, its connections checked out in autocommit mode (PostgreSQL).

    A view on the engine's own pool, not a second pool: a process's connections stay within the
    bound one engine sets (see store.db), which is what lets many workers share a server.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")  # type: ignore[return-value]


def _connected(engine: Engine, transaction: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    if transaction:
        with engine.begin() as conn:
            return fn(conn, *args)
    with engine.connect() as conn:
        return fn(conn, *args)


def _in_memory(engine: AsyncEngine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or engine.url.query.get("mode") == "memory"


class _Pager:
    """The paging of `list`, shared by the sync and async loops."""

    def __init__(self, saver: _SqlSaverBase, config: Any, filter: Any, before: Any, limit: int | None):
        self.plan = saver._list_plan(config, filter, before, limit)
        self.left = limit
        self.after: tuple[str, str, str] | None = None
        self.done = limit is not None and limit <= 0

    def args(self) -> tuple[Any, ...]:
        return (self.plan, self.after)

    def take(self, page: list[CheckpointTuple], after: tuple[str, str, str] | None) -> list[CheckpointTuple]:
        if self.left is not None:
            page = page[: self.left]
            self.left -= len(page)
        self.after = after
        self.done = after is None or self.left == 0
        return page


class SqlSaver(_SqlSaverBase):
    """Checkpoint saver on a synchronous SQLAlchemy Engine (SQLite or PostgreSQL).

    The async methods run the sync ones in a worker thread, so the saver also serves async
    graphs; `AsyncSqlSaver` is the one meant for them.
    """

    def __init__(self, engine: Engine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        # PostgreSQL: reads and one-statement writes run in autocommit mode, with no BEGIN/COMMIT.
        self._autocommit = (
            _autocommit_twin(engine) if self.dialect == "postgresql" else engine
        )
        self._write_lock: AbstractContextManager[Any] = (
            _thread_lock(engine) if self.dialect == "sqlite" else nullcontext()
        )

    def close(self) -> None:
        """Nothing of its own to release: the engine given stays the caller's."""

    def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.engine in _schema_ready:
            return
        with self.engine.connect() as conn:
            setup_schema(conn)
        _schema_ready.add(self.engine)

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self.setup()
        with self._autocommit.connect() as conn:
            return fn(conn, *args)

    def _write(self, fn: Callable[..., T], *args: Any, atomic: bool = True) -> T:
        self.setup()
        if not atomic:
            with self._autocommit.connect() as conn:
                return fn(conn, *args)
        with self._write_lock, self.engine.begin() as conn:
            return fn(conn, *args)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._read(self._op_get_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        pager = _Pager(self, config, filter, before, limit)
        while not pager.done:
            yield from pager.take(*self._read(self._op_list_load, *pager.args()))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        plan, next_config = self._plan_put(config, checkpoint, metadata, new_versions)
        self._write(self._op_put, plan, atomic=not self.single_statement_writes)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        plan = self._plan_writes(config, writes, task_id, task_path)
        self._write(self._op_put_writes, plan, atomic=not self.single_statement_writes)

    def delete_thread(self, thread_id: str) -> None:
        self._write(self._op_delete_threads, [str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self._write(self._op_delete_for_runs, [str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._write(self._op_copy_thread, str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ids = _check_prune_args(thread_ids, strategy)
        if not ids:
            return
        if strategy == "delete":
            self._write(self._op_delete_threads, ids)
            return
        self._read(self._op_refuse_delta_threads, ids)
        for thread_id in ids:
            self._write(self._op_keep_latest, thread_id)

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
        pager = _Pager(self, config, filter, before, limit)
        while not pager.done:
            page = await asyncio.to_thread(self._read, self._op_list_load, *pager.args())
            for tup in pager.take(*page):
                yield tup

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
    """Checkpoint saver for async graphs, on an AsyncEngine (SQLite via aiosqlite, or psycopg).

    On PostgreSQL it works through the AsyncEngine (transactions) and an autocommit companion
    engine on the same URL (reads, `put`, `put_writes`). On a SQLite file it works on a pysqlite
    engine of its own for the same file, in one worker thread (see the module docstring). Call
    `aclose()` (`open_checkpointer` does) to dispose of what it made.

    The sync methods work from any thread on SQLite. On PostgreSQL they hand the work to the
    event loop the saver runs on, so they must not be called from that loop's own thread.
    """

    def __init__(self, engine: AsyncEngine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        # See SqlSaver: PostgreSQL's reads and one-statement writes use an autocommit companion.
        self._autocommit = (
            _autocommit_twin(engine) if self.dialect == "postgresql" else engine
        )
        self._local: SqlSaver | None = None
        self._executor: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite" and not _in_memory(engine):
            self._local = SqlSaver(sync_engine(engine.url.render_as_string(hide_password=False)))
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cads-sqlite")

    async def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self._local is not None:
            if self._local.engine not in _schema_ready:
                await self._in_thread(self._local.setup)
            return
        if self.engine.sync_engine in _schema_ready:
            return
        async with self.engine.connect() as conn:
            await conn.run_sync(setup_schema)
        _schema_ready.add(self.engine.sync_engine)

    async def aclose(self) -> None:
        """Dispose what the saver made for itself: the SQLite worker thread and its engine. The
        AsyncEngine given stays the caller's."""
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
            self._executor = None
        if self._local is not None:
            self._local.close()
            self._local.engine.dispose()

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            raise RuntimeError("this AsyncSqlSaver is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # Off the SQLite worker, an operation is one greenlet hop (what AsyncConnection.run_sync does,
    # here around the checkout too): the sync `_op_*` code then drives the async driver.

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        await self.setup()
        if self._local is not None:
            return await self._in_thread(self._local._read, fn, *args)
        return await greenlet_spawn(_connected, self._autocommit.sync_engine, False, fn, args)

    async def _write(self, fn: Callable[..., T], *args: Any, atomic: bool = True) -> T:
        await self.setup()
        if self._local is not None:
            return await self._in_thread(self._local._write, fn, *args)
        if not atomic:
            return await greenlet_spawn(_connected, self._autocommit.sync_engine, False, fn, args)
        lock = _task_lock(self.engine.sync_engine) if self.dialect == "sqlite" else None
        async with lock if lock is not None else nullcontext():  # type: ignore[attr-defined]
            return await greenlet_spawn(_connected, self.engine.sync_engine, True, fn, args)

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
        pager = _Pager(self, config, filter, before, limit)
        while not pager.done:
            for tup in pager.take(*await self._read(self._op_list_load, *pager.args())):
                yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        plan, next_config = self._plan_put(config, checkpoint, metadata, new_versions)
        await self._write(self._op_put, plan, atomic=not self.single_statement_writes)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        plan = self._plan_writes(config, writes, task_id, task_path)
        await self._write(self._op_put_writes, plan, atomic=not self.single_statement_writes)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._write(self._op_delete_threads, [str(thread_id)])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self._write(self._op_delete_for_runs, [str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._write(self._op_copy_thread, str(source_thread_id), str(target_thread_id))

    async def athin(self, thread_id: str, after: str, before: str) -> None:
        """Keep checkpoints `after` and `before` of a thread and none between them (see `_op_thin`)."""
        await self._write(self._op_thin, str(thread_id), after, before)

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

    # sync forms

    def _sync(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run the SqlSaver method `name` (SQLite file), or the a-method on the saver's loop."""
        if self._local is not None:
            # A view of the worker's saver with this saver's serde (`with_allowlist` clones differ
            # in it); the calling thread does the I/O.
            local = copy.copy(self._local)
            local.serde = self.serde
            return getattr(local, name)(*args, **kwargs)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or self.loop.is_closed():
            raise RuntimeError(
                "AsyncSqlSaver's sync methods need the event loop it runs on: use the saver "
                "(or `await saver.setup()`) in that loop first, or use SqlSaver"
            )
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "a synchronous AsyncSqlSaver call from its own event loop would block it; use the "
                "a* methods (e.g. `await graph.aget_state(...)`) or call from another thread"
            )

        async def call() -> Any:
            if name == "list":
                return [t async for t in self.alist(*args, **kwargs)]
            return await getattr(self, "a" + name)(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync("get_tuple", config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._sync("list", config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync("put", config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync("put_writes", config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._sync("delete_thread", thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync("delete_for_runs", run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync("copy_thread", source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync("prune", thread_ids, strategy=strategy)
