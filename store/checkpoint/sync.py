"""`SqlSaver`: checkpoints for graphs run synchronously (`invoke`, `stream`), in the calling thread."""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import Engine

from ..patience import patient_sync
from .base import BaseSqlSaver, autocommit_twin, check_prune_args, schema_ready, setup_schema
from .listing import Pager

T = TypeVar("T")

# LangGraph saves the writes of parallel tasks from several threads at once. On SQLite the write
# transactions on one engine queue here instead of failing with "database is locked".
_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _write_lock(engine: Engine) -> threading.Lock:
    with _locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:
            lock = _write_locks[engine] = threading.Lock()
        return lock


def _sync_only() -> NoReturn:
    raise NotImplementedError(
        "SqlSaver is synchronous: for async graphs (ainvoke, astream) use AsyncSqlSaver "
        "(cadsynth.store.open_checkpointer)"
    )


class SqlSaver(BaseSqlSaver):
    """Checkpoint saver on a synchronous SQLAlchemy Engine (SQLite or PostgreSQL).

    Sync only, like LangGraph's SqliteSaver: its async methods raise; async graphs use
    `AsyncSqlSaver`.
    """

    def __init__(self, engine: Engine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        # PostgreSQL: reads and one-statement writes run in autocommit mode, with no BEGIN/COMMIT.
        self._autocommit = autocommit_twin(engine) if self.dialect == "postgresql" else engine
        self._write_lock: AbstractContextManager[Any] = (
            _write_lock(engine) if self.dialect == "sqlite" else nullcontext()
        )

    def close(self) -> None:
        """Nothing of its own to release: the engine given stays the caller's."""

    def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.engine in schema_ready:
            return
        with self.engine.connect() as conn:
            setup_schema(conn)
        schema_ready.add(self.engine)

    @patient_sync
    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self.setup()
        with self._autocommit.connect() as conn:
            return fn(conn, *args)

    @patient_sync
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
        pager = Pager(self.dialect, config, filter, before, limit)
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
        ids = check_prune_args(thread_ids, strategy)
        if not ids:
            return
        if strategy == "delete":
            self._write(self._op_delete_threads, ids)
            return
        self._read(self._op_refuse_delta_threads, ids)
        for thread_id in ids:
            self._write(self._op_keep_latest, thread_id)

    # The async forms refuse with a pointer to the async saver (the base class's say nothing).

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        _sync_only()

    def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        _sync_only()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _sync_only()

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        _sync_only()
