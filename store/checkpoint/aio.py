"""`AsyncSqlSaver`: checkpoints for graphs run on an event loop (`ainvoke`, `astream`, the server).

It runs the shared `_op_*` operations without blocking the loop, in one of two ways:

* On PostgreSQL (and an in-memory SQLite database) on the ``AsyncEngine``, in one greenlet hop per
  operation (the mechanism of ``AsyncConnection.run_sync``: psycopg's non-blocking I/O under sync
  code). Reads, `put` and `put_writes` run on an autocommit twin of the engine, with no
  BEGIN/COMMIT; other writes are transactions.
* On a SQLite file, on a pysqlite engine for the same file, in one worker thread of its own:
  SQLite I/O blocks in-process whatever the driver (aiosqlite is a thread too), and one thread hop
  per operation beats aiosqlite's several per statement. The one worker also serializes the
  saver's write transactions, which LangGraph issues concurrently for parallel tasks.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ..db import sync_engine
from ..patience import patient
from .base import BaseSqlSaver, autocommit_twin, check_prune_args, connected, schema_ready, setup_schema
from .listing import Pager

T = TypeVar("T")

# In-memory SQLite: the write transactions on one engine queue for this lock (per event loop).
_task_locks: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_locks_guard = threading.Lock()


def _task_lock(engine: Engine) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _locks_guard:
        entry = _task_locks.get(engine)
        if entry is None or entry[0] is not loop:
            entry = _task_locks[engine] = (loop, asyncio.Lock())
        return entry[1]


def _in_memory(engine: AsyncEngine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or engine.url.query.get("mode") == "memory"


class AsyncSqlSaver(BaseSqlSaver):
    """Checkpoint saver for async graphs, on an AsyncEngine (SQLite via aiosqlite, or psycopg).

    See the module docstring for how it reaches each database. Call `aclose()`
    (`open_checkpointer` does) to dispose of what it made; the AsyncEngine given stays the caller's.

    Its sync methods, as in LangGraph's async savers, wait for the async ones: called from another
    thread than the saver's loop (e.g. `graph.get_state` in a worker thread). On a SQLite file,
    whose I/O blocks in-process anyway, they also work on the loop's own thread.
    """

    def __init__(self, engine: AsyncEngine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(dialect=engine.dialect.name, serde=serde)
        self.engine = engine
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self._autocommit = autocommit_twin(engine) if self.dialect == "postgresql" else engine
        # A SQLite file: its pysqlite engine and the one thread that uses it.
        self._file: Engine | None = None
        self._worker: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite" and not _in_memory(engine):
            self._file = sync_engine(engine.url.render_as_string(hide_password=False))
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cads-sqlite")

    async def setup(self) -> None:
        """Create the tables if needed (done on first use anyway)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self._file is not None:
            if self._file not in schema_ready:
                await self._in_worker(connected, self._file, False, setup_schema, ())
                schema_ready.add(self._file)
            return
        if self.engine.sync_engine in schema_ready:
            return
        async with self.engine.connect() as conn:
            await conn.run_sync(setup_schema)
        schema_ready.add(self.engine.sync_engine)

    async def aclose(self) -> None:
        """Dispose what the saver made for itself: the SQLite worker thread and its engine."""
        if self._worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)
            self._worker = None
        if self._file is not None:
            self._file.dispose()

    def _in_worker(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._worker is None:
            raise RuntimeError("this AsyncSqlSaver is closed")
        return asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # Off the SQLite worker, an operation is one greenlet hop (what AsyncConnection.run_sync does,
    # here around the checkout too): the sync `_op_*` code then drives the async driver.

    @patient
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        await self.setup()
        if self._file is not None:
            return await self._in_worker(connected, self._file, False, fn, args)
        return await greenlet_spawn(connected, self._autocommit.sync_engine, False, fn, args)

    @patient
    async def _write(self, fn: Callable[..., T], *args: Any, atomic: bool = True) -> T:
        await self.setup()
        if self._file is not None:
            return await self._in_worker(connected, self._file, True, fn, args)
        if not atomic:
            return await greenlet_spawn(connected, self._autocommit.sync_engine, False, fn, args)
        lock = _task_lock(self.engine.sync_engine) if self.dialect == "sqlite" else None
        async with lock if lock is not None else nullcontext():  # type: ignore[attr-defined]
            return await greenlet_spawn(connected, self.engine.sync_engine, True, fn, args)

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
        pager = Pager(self.dialect, config, filter, before, limit)
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

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ids = check_prune_args(thread_ids, strategy)
        if not ids:
            return
        if strategy == "delete":
            await self._write(self._op_delete_threads, ids)
            return
        await self._read(self._op_refuse_delta_threads, ids)
        for thread_id in ids:
            await self._write(self._op_keep_latest, thread_id)

    # -- the sync methods: each waits for its async form -------------------------------------

    def _wait(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if self._file is not None:
            # A SQLite file: the async form runs on a loop of its own in a helper thread, so any
            # thread may wait for it, the saver's loop's included (it is blocked no longer than
            # by the I/O itself, which the worker thread does either way).
            with ThreadPoolExecutor(max_workers=1) as helper:
                return helper.submit(asyncio.run, work()).result()
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
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result()

    async def _alist_all(self, *args: Any, **kwargs: Any) -> list[CheckpointTuple]:
        return [t async for t in self.alist(*args, **kwargs)]

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._wait(lambda: self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._wait(lambda: self._alist_all(config, filter=filter, before=before, limit=limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._wait(lambda: self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._wait(lambda: self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._wait(lambda: self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._wait(lambda: self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._wait(lambda: self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._wait(lambda: self.aprune(thread_ids, strategy=strategy))
