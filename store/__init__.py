"""The SQL store: the round ledger and LangGraph's checkpoints, in one database named by one URL.

`open_checkpointer()` is what a `langgraph.json` can point at::

    "checkpointer": {"path": "cadsynth.store:open_checkpointer"}
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .checkpoint import AsyncSqlSaver, RoundThinningSaver, SqlSaver, UnsupportedDatabaseError, setup_schema
    from .migrate import SchemaVersionError

DEFAULT_URL = "sqlite:///cads.db"

__all__ = [
    "DEFAULT_URL",
    "AsyncSqlSaver",
    "RoundThinningSaver",
    "SchemaVersionError",
    "SqlSaver",
    "UnsupportedDatabaseError",
    "database_url",
    "open_checkpointer",
    "open_checkpointer_sync",
    "setup_schema",
    "thread_id",
]


def __getattr__(name: str) -> Any:
    # The checkpointer pulls in LangGraph: loaded on first use, so `cads --help` and readers start fast.
    if name in ("AsyncSqlSaver", "RoundThinningSaver", "SqlSaver", "UnsupportedDatabaseError", "setup_schema"):
        from . import checkpoint

        return getattr(checkpoint, name)
    if name == "SchemaVersionError":
        from .migrate import SchemaVersionError

        return SchemaVersionError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# LangGraph's server takes only UUIDs for thread ids; runs have names. A run named by the CLI keeps
# its checkpoints under a UUID derived from its name, so Studio can open it; a run Studio started is
# named by its thread's UUID already.
_RUN_THREADS = uuid.UUID("6f1c0b52-2d0e-4c1b-9a57-0c4ad5c1e0a3")


def thread_id(run: str) -> str:
    """The LangGraph thread that holds a run's checkpoints."""
    try:
        if str(uuid.UUID(run)) == run:
            return run
    except ValueError:
        pass
    return str(uuid.uuid5(_RUN_THREADS, run))


def database_url(url: str | None = None) -> str:
    """`url`, else $CADS_DB, else sqlite:///cads.db."""
    return url or os.environ.get("CADS_DB") or DEFAULT_URL


@asynccontextmanager
async def open_checkpointer(
    url: str | None = None, *, engine: AsyncEngine | None = None, thin_rounds: bool = False
) -> AsyncIterator[AsyncSqlSaver]:
    """An AsyncSqlSaver on `url` (default: $CADS_DB, else sqlite:///cads.db), tables created.

    Callable with no arguments, as the LangGraph server calls a `checkpointer.path` factory.
    The engine is disposed on exit, unless it was given (`engine`: share the ledger's pool, so a
    process holds one bounded set of connections). `thin_rounds`: a `RoundThinningSaver`, which
    drops a closed round's intermediate checkpoints when told the round closed.
    """
    from .checkpoint import AsyncSqlSaver, RoundThinningSaver
    from .db import async_engine

    own = engine is None
    # In a thread: a relative SQLite path is resolved with os.getcwd, which blocks the event loop.
    used = await asyncio.to_thread(async_engine, database_url(url)) if engine is None else engine
    saver = (RoundThinningSaver if thin_rounds else AsyncSqlSaver)(used)
    try:
        await saver.setup()
        yield saver
    finally:
        await saver.aclose()
        if own:
            await used.dispose()


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
