"""LangGraph checkpoints in the store's SQL database, for SQLite and PostgreSQL, sync and async.

Three tables (see the checkpoint section of `store.schema`):

* ``cads_checkpoints``: one row per checkpoint. The serialized checkpoint keeps only small scalar
  channel values inline; the metadata is stored serialized, plus its JSON-representable keys as
  JSON so that `list(filter=...)` runs in SQL.
* ``cads_checkpoint_blobs``: every other channel value, once per (thread, namespace, channel,
  version). A step stores blobs only for the channels it changed (``new_versions``), so a large
  value that stays put costs nothing per step.
* ``cads_checkpoint_writes``: pending writes per (checkpoint, task, idx).

Round trips: `get_tuple` and each page of `list` are one statement (the checkpoint rows, their
blobs and their pending writes, UNION ALL). On PostgreSQL `put` and `put_writes` are one
statement each too (rows travel as arrays; `put` adds its blobs in a CTE).

Laid out as LangGraph's own savers are:

* `sql`: the statements, built once per dialect; `listing`: how a `list` call pages.
* `base`: what both savers share: planning a write, reading rows back, and every database
  operation, written once as an ``_op_*`` function of a sync ``Connection``.
* `sync`: `SqlSaver`, sync only, on an ``Engine``.
* `aio`: `AsyncSqlSaver`, on an ``AsyncEngine`` (its sync methods wait for the async ones).
* `retention`: `RoundThinningSaver`, the async saver that also drops a closed round's
  intermediate checkpoints.
"""

from ..migrate import SchemaVersionError
from .aio import AsyncSqlSaver
from .base import setup_schema
from .retention import RoundThinningSaver
from .sql import UnsupportedDatabaseError
from .sync import SqlSaver

__all__ = [
    "AsyncSqlSaver",
    "RoundThinningSaver",
    "SchemaVersionError",
    "SqlSaver",
    "UnsupportedDatabaseError",
    "setup_schema",
]
