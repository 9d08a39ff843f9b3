"""What the sync and async checkpoint savers share: the plans of a write, the reading back of
rows, and every database operation, written once as an ``_op_*`` function of a synchronous
SQLAlchemy ``Connection``. The savers differ only in how they reach the database (`sync`, `aio`).

The statements themselves are in `sql`, built once per dialect; `list` calls are planned in
`listing`.
"""

from __future__ import annotations

import json
import random
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from sqlalchemy import Connection, Engine, Table, bindparam, delete, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import migrate
from ..upsert import insert, skip_existing
from .listing import Cursor, ListPlan, matches
from .sql import B, C, UnsupportedDatabaseError, W, statements

T = TypeVar("T")
E = TypeVar("E", Engine, AsyncEngine)

# Scalars at most this long stay inside the checkpoint row; anything else becomes a blob.
_INLINE_STR_MAX = 256
# Rows per IN (...) list, well under SQLite's bound-parameter limit.
_CHUNK = 400
_PRUNE_STRATEGIES = ("keep_latest", "delete")
# Metadata keys LangGraph sets on threads whose graphs use a DeltaChannel.
_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")


def setup_schema(conn: Connection) -> None:
    """`store.migrate.setup_schema` (locked, version-checked) on a backend the saver supports."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise UnsupportedDatabaseError(f"checkpoints need SQLite or PostgreSQL, not {name}")
    migrate.setup_schema(conn)


# The engines whose tables are known to be set up in this process.
schema_ready: weakref.WeakSet[Engine] = weakref.WeakSet()


# --- what a put / put_writes stores -----------------------------------------------------------


@dataclass(slots=True)
class _PutPlan:
    blobs: list[dict[str, Any]]
    row: dict[str, Any]


@dataclass(slots=True)
class _WritesPlan:
    rows: list[dict[str, Any]]
    overwrite: bool


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


def blob_keys(versions: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """The (channel, version) blob keys a checkpoint's channel_versions name."""
    return ((channel, str(version)) for channel, version in (versions or {}).items())


class BaseSqlSaver(BaseCheckpointSaver[str]):
    """Planning, row mapping and every database operation, as functions of a sync Connection."""

    def __init__(self, *, dialect: str, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.dialect = dialect
        self.sql = statements(dialect)
        # PostgreSQL: `put` and `put_writes` are one statement each, so they need no transaction.
        self.single_statement_writes = dialect == "postgresql"

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
        """Tuples from the rows of a `Statements.read`, newest checkpoint first."""
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

    # -- operations: each runs on one Connection, in whatever thread or greenlet a saver uses ----

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
            conn.execute(self.sql.pg_put, params)
            return
        if plan.blobs:
            conn.execute(self.sql.insert_blobs, plan.blobs)
        conn.execute(self.sql.upsert_checkpoint, plan.row)

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
            conn.execute(self.sql.pg_upsert_writes if plan.overwrite else self.sql.pg_insert_writes, params)
            return
        conn.execute(self.sql.upsert_writes if plan.overwrite else self.sql.insert_writes, plan.rows)

    def _op_get_tuple(self, conn: Connection, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        params = {"t": str(conf["thread_id"]), "ns": conf.get("checkpoint_ns") or ""}
        if checkpoint_id := get_checkpoint_id(config):
            found = self._assemble(conn.execute(self.sql.by_id, {**params, "id": checkpoint_id}))
        else:
            found = self._assemble(conn.execute(self.sql.latest, params))
        return found[0] if found else None

    def _op_list_load(
        self, conn: Connection, plan: ListPlan, after: Cursor | None
    ) -> tuple[list[CheckpointTuple], Cursor | None]:
        """One page of `list`: the tuples after `after` in list order (filtered by the plan's
        residual), and the cursor for the next page, None when this one was the last."""
        params = {**plan.params, "l_limit": plan.size}
        if after is not None:
            params["l_after_id"], params["l_after_thread"], params["l_after_ns"] = after
        page = self._assemble(conn.execute(self.sql.list(plan.shape, after is not None), params))
        cursor = None
        if len(page) == plan.size:
            last = page[-1].config["configurable"]
            cursor = (last["checkpoint_id"], last["thread_id"], last["checkpoint_ns"])
        if plan.residual:
            page = [t for t in page if matches(t.metadata, plan.residual)]
        return page, cursor

    # -- whole threads and runs: delete_thread, copy_thread, delete_for_runs, prune -----------

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
            rows = select(*picked).where(table.c.thread_id == source)
            conn.execute(skip_existing(insert(self.dialect, table).from_select(columns, rows)))

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
            freed = {v for r in rows for v in blob_keys(r.channel_versions)}
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
        self, conn: Connection, thread_id: str, ns: str, freed: set[tuple[str, str]], since: str | None = None
    ) -> None:
        """Delete the blobs among `freed` that no remaining checkpoint of (thread, ns) uses.

        With `since`, only checkpoints from that one on are asked: the caller knows no older one
        can use a freed blob (thinning, where `since` is the kept checkpoint the freed ones followed)."""
        if not freed:
            return
        where = [C.c.thread_id == thread_id, C.c.checkpoint_ns == ns]
        if since is not None:
            where.append(C.c.checkpoint_id >= since)
        used = {v for (versions,) in conn.execute(select(C.c.channel_versions).where(*where)) for v in blob_keys(versions)}
        garbage = sorted(freed - used)
        for chunk in _chunks(garbage):
            conn.execute(
                delete(B).where(
                    B.c.thread_id == thread_id,
                    B.c.checkpoint_ns == ns,
                    tuple_(B.c.channel, B.c.version).in_(list(chunk)),
                )
            )

    def _op_refuse_delta_threads(self, conn: Connection, thread_ids: Sequence[str]) -> None:
        found: set[str] = set()
        for chunk in _chunks(list(thread_ids)):
            found.update(
                conn.execute(
                    select(C.c.thread_id)
                    .where(C.c.thread_id.in_(list(chunk)), or_(*(self.sql.has_key(k) for k in _DELTA_KEYS)))
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
            freed = {v for r in unkept for v in blob_keys(r.channel_versions)}
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


def check_prune_args(thread_ids: Sequence[str], strategy: str) -> list[str]:
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread IDs, not one str")
    if strategy not in _PRUNE_STRATEGIES:
        raise ValueError(f"unknown prune strategy {strategy!r}; use one of {_PRUNE_STRATEGIES}")
    return [str(t) for t in thread_ids]


def autocommit_twin(engine: E) -> E:
    """The same engine, its connections checked out in autocommit mode (PostgreSQL).

    A view on the engine's own pool, not a second pool: a process's connections stay within the
    bound one engine sets (see store.db), which is what lets many workers share a server.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")  # type: ignore[return-value]


def connected(engine: Engine, transaction: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """`fn(conn, *args)` on a connection of `engine`, in a transaction if `transaction`."""
    if transaction:
        with engine.begin() as conn:
            return fn(conn, *args)
    with engine.connect() as conn:
        return fn(conn, *args)
