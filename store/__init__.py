"""The SQL store: the round ledger and LangGraph's checkpoints, in one database named by one URL.

`open_checkpointer()` is what a `langgraph.json` can point at::

    "checkpointer": {"path": "cadsynth.store:open_checkpointer"}
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import AsyncSqlSaver, SqlSaver, UnsupportedDatabaseError, setup_schema
    from .migrate import SchemaVersionError

DEFAULT_URL = "sqlite:///cads.db"

__all__ = [
    "DEFAULT_URL",
    "AsyncSqlSaver",
    "SchemaVersionError",
    "SqlSaver",
    "UnsupportedDatabaseError",
    "database_url",
    "open_checkpointer",
    "open_checkpointer_sync",
    "setup_schema",
]


def __getattr__(name: str) -> Any:
    # The checkpointer pulls in LangGraph: loaded on first use, so `cads --help` and readers start fast.
    if name in ("AsyncSqlSaver", "SqlSaver", "UnsupportedDatabaseError", "setup_schema"):
        from . import checkpoint

        return getattr(checkpoint, name)
    if name == "SchemaVersionError":
        from .migrate import SchemaVersionError

        return SchemaVersionError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def database_url(url: str | None = None) -> str:
    """`url`, else $CADS_DB, else sqlite:///cads.db."""
    return url or os.environ.get("CADS_DB") or DEFAULT_URL


@asynccontextmanager
async def open_checkpointer(url: str | None = None) -> AsyncIterator[AsyncSqlSaver]:
    """An AsyncSqlSaver on `url` (default: $CADS_DB, else sqlite:///cads.db), tables created.

    Callable with no arguments, as the LangGraph server calls a `checkpointer.path` factory.
    The engine is disposed on exit.
    """
    from .checkpoint import AsyncSqlSaver
    from .db import async_engine

    # In a thread: a relative SQLite path is resolved with os.getcwd, which blocks the event loop.
    engine = await asyncio.to_thread(async_engine, database_url(url))
    saver = AsyncSqlSaver(engine)
    try:
        await saver.setup()
        yield saver
    finally:
        await saver.aclose()
        await engine.dispose()


@contextmanager
def open_checkpointer_sync(url: str | None = None) -> Iterator[SqlSaver]:
    """A SqlSaver on `url` (default: $CADS_DB, else sqlite:///cads.db), tables created."""
    from .checkpoint import SqlSaver
    from .db import sync_engine

    engine = sync_engine(database_url(url))
    saver = SqlSaver(engine)
    try:
        saver.setup()
        yield saver
    finally:
        saver.close()
        engine.dispose()
