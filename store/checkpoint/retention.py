"""`RoundThinningSaver`: the saver a run uses when it keeps only its rounds' boundaries.

A variant of `AsyncSqlSaver`, as LangGraph's shallow savers are of theirs: it stores checkpoints
the same way and also forgets some. Resume and replay start from round boundaries (the
checkpoint before `open_round`, and the run's last), so a closed round's intermediate
checkpoints are worth nothing once the next boundary is saved (`checkpoints: rounds`, the
default; the runner tells the saver of no boundary of a run with `checkpoints: all`).
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import Connection, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .aio import AsyncSqlSaver
from .base import blob_keys
from .sql import C, W


class RoundThinningSaver(AsyncSqlSaver):
    """An AsyncSqlSaver that, told of each round boundary as it is saved, deletes the checkpoints
    saved since the thread's previous boundary (`aclose_round`)."""

    def __init__(self, engine: AsyncEngine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(engine, serde=serde)
        # The last boundary each thread was told of, in this process: a resumed run's first round
        # keeps its checkpoints, since its previous boundary was saved by another process.
        self._boundaries: dict[str, str] = {}

    async def aclose_round(self, config: RunnableConfig) -> None:
        """`config` (a saved checkpoint's) is a round boundary: thin the round that ends there."""
        conf = config["configurable"]
        thread_id, saved = str(conf["thread_id"]), str(conf["checkpoint_id"])
        previous = self._boundaries.get(thread_id)
        if previous is not None and previous != saved:
            await self.athin(thread_id, previous, saved)
        self._boundaries[thread_id] = saved

    async def athin(self, thread_id: str, after: str, before: str) -> None:
        """Keep checkpoints `after` and `before` of a thread and none between them (see `_op_thin`)."""
        await self._write(self._op_thin, str(thread_id), after, before)

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
        # A channel's versions only grow along a thread, so a version a deleted checkpoint holds is
        # either `after`'s own or newer than `after`: no checkpoint older than `after` can hold it,
        # and the check reads the few checkpoints from `after` on, not the whole run's boundaries.
        freed = {v for r in rows for v in blob_keys(r.channel_versions)}
        self._collect_blobs(conn, thread_id, "", freed, since=after)
