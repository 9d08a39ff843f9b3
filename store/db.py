"""One database URL for everything the store keeps: engines for it, sync and async.

On PostgreSQL many processes share one server (lanes on a Ray cluster, Studio, readers), so each
engine holds at most `pool_size()` connections ($CADS_DB_POOL, default 3: 32 workers fit in the
server's default max_connections of 100), waits for a free one rather than failing, and a
connection refused because the server is full is asked for again until one frees up.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from cadsynth.store.patience import patient

# Drivers for each backend: (sync, async). psycopg 3 does both for PostgreSQL. MySQL and MariaDB
# are not among them: the checkpoint store's upserts and locks are written for these two.
_DRIVERS = {
    "sqlite": ("pysqlite", "aiosqlite"),
    "postgresql": ("psycopg", "psycopg"),
}


class DatabaseURLError(ValueError):
    pass


P = ParamSpec("P")
T = TypeVar("T")


def whole(write: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A write that, once begun, finishes even if the task awaiting it is cancelled, and waits out
    a database outage (store.patience).

    When one task of a step fails, LangGraph cancels its siblings. A write cut off mid-transaction
    would lose the rows it carried and, on SQLite, can leave a connection holding the database's
    write lock until it is collected, so every later write waits out its busy timeout.
    """

    waiting = patient(write)

    @functools.wraps(write)
    async def shielded(*args: P.args, **kwargs: P.kwargs) -> T:
        done = asyncio.ensure_future(waiting(*args, **kwargs))
        # Cancelled, the caller no longer reads the write's outcome; its failure is the run's
        # failure, told by the caller's siblings, not a "never retrieved" warning at exit.
        done.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(done)

    shielded.__patient__ = True  # type: ignore[attr-defined]
    return shielded


def normalize_url(url: str, *, asynchronous: bool) -> str:
    """`sqlite:///cads.db` or `postgresql://...` -> the same URL with the driver this process uses."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a long message
        raise DatabaseURLError(f"database URL {url!r} is not a URL ({exc}); use e.g. sqlite:///cads.db") from None
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise DatabaseURLError(
            f"database URL {url!r}: backend {backend!r} is not supported; use sqlite:///FILE or postgresql+psycopg://..."
        )
    driver = _DRIVERS[backend][1 if asynchronous else 0]
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers (cads show/stats) work while a run writes; busy_timeout rides out short locks.
    cursor = dbapi_connection.cursor()
    # A new file only (a store's page size is fixed once it has tables): a proposal record is some
    # 2 KB, and 4 KiB pages held one such row where they could not fit two.
    cursor.execute("PRAGMA page_size=8192")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


DEFAULT_POOL = 3
# How long a process waits for a connection, from its own pool or from a full server, before the
# operation fails: long, because a busy cluster frees connections as its runs finish.
CONNECT_WAIT = 600.0
# What PostgreSQL says when every connection slot is taken (it sets no SQLSTATE before auth).
_SERVER_FULL = ("too many clients", "remaining connection slots are reserved")


def pool_size() -> int:
    """Connections one engine may hold on PostgreSQL: $CADS_DB_POOL, else 3."""
    value = os.environ.get("CADS_DB_POOL", "")
    if not value:
        return DEFAULT_POOL
    if not value.isdigit() or int(value) < 1:
        raise DatabaseURLError(f"CADS_DB_POOL={value!r}: give the connections per process as a whole number, e.g. 3")
    return int(value)


def _pool_options(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    # No overflow: the bound is what lets many processes share one server. pre_ping: a server
    # restarted under a long run costs a reconnect, not a failed write.
    return {"pool_size": pool_size(), "max_overflow": 0, "pool_timeout": CONNECT_WAIT, "pool_pre_ping": True}


def _server_full(exc: BaseException) -> bool:
    return any(words in str(exc) for words in _SERVER_FULL)


def _connect_when_free(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Connect, asking again with backoff while the server has no free connection slot."""
    deadline = time.monotonic() + CONNECT_WAIT
    delay = 0.05
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if not _server_full(exc) or time.monotonic() > deadline:
                raise
        pause = delay * (1 + random.random())  # jitter: processes refused together do not retry together
        if dialect.is_async:
            await_only(asyncio.sleep(pause))  # inside the async engine's greenlet: yield to the loop
        else:
            time.sleep(pause)
        delay = min(delay * 2, 2.0)


def _compact_json(value: Any) -> str:
    # Records are JSON columns: without the default's spaces a record is some 7% smaller on disk.
    return json.dumps(value, separators=(",", ":"))


def sync_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(normalize_url(url, asynchronous=False), json_serializer=_compact_json, **_pool_options(url), **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "do_connect", _connect_when_free)
    return engine


def async_engine(url: str) -> AsyncEngine:
    options = _pool_options(url)
    if make_url(url).get_backend_name() == "sqlite" and ":memory:" not in url:
        # SQLite takes one writer at a time: more connections of one process would only wait for
        # each other in its busy handler, and each new aiosqlite connection costs a thread. Every
        # task of every lane queues for that one connection: on a loaded machine the queue can
        # take longer than SQLAlchemy's default 30 s, which would fail the run.
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": CONNECT_WAIT}
    engine = create_async_engine(normalize_url(url, asynchronous=True), json_serializer=_compact_json, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine.sync_engine, "do_connect", _connect_when_free)
    return engine
