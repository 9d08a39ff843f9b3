"""One database URL for everything the store keeps: engines for it, sync and async."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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
    """A write that, once begun, finishes even if the task awaiting it is cancelled.

    When one task of a step fails, LangGraph cancels its siblings. A write cut off mid-transaction
    would lose the rows it carried and, on SQLite, can leave a connection holding the database's
    write lock until it is collected, so every later write waits out its busy timeout.
    """

    @functools.wraps(write)
    async def shielded(*args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.shield(write(*args, **kwargs))

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
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sync_engine(url: str) -> Engine:
    engine = create_engine(normalize_url(url, asynchronous=False))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def async_engine(url: str) -> AsyncEngine:
    url = normalize_url(url, asynchronous=True)
    # SQLite takes one writer at a time: more connections of one process would only wait for each
    # other in its busy handler, and each new aiosqlite connection costs a thread.
    options = {"pool_size": 1, "max_overflow": 0} if url.startswith("sqlite") and ":memory:" not in url else {}
    engine = create_async_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine
