"""Notes: what a model keeps for itself between its calls, by book and key.

The store does not read them; their owner does (the simulated panel keeps its world's truth here,
and `cads stats` asks the simulator to read it back). The first value written under a key stays,
like the call cache's: a key names content, so a second writer would write the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.patience import patient
from cadsynth.store.migrate import SetUpOnce
from cadsynth.store.upsert import insert_new


class Notes:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._set_up = SetUpOnce(engine)
        self._unwritten: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    @whole
    async def _init(self) -> None:
        await self._set_up()

    async def get(self, book: str, key: str) -> dict[str, Any] | None:
        found = await self.get_many(book, [key])
        return found.get(key)

    @patient
    async def get_many(self, book: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The notes of `book` under `keys` (those that exist), read in batches."""
        await self._init()
        wanted = sorted(set(keys))
        found: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):  # under every backend's bound-parameter limit
                batch = wanted[start : start + 500]
                rows = await conn.execute(
                    select(t.notes.c.key, t.notes.c.value).where(t.notes.c.book == book, t.notes.c.key.in_(batch))
                )
                found.update({key: value for key, value in rows})
        return found

    async def put(self, book: str, values: dict[str, dict[str, Any]]) -> None:
        """Keep each value under its key in `book`, unless the key is taken already. Returns once
        they are stored; the notes put meanwhile (a round's proposers write at once) share one
        transaction, since every write of a process waits for the store's one connection."""
        if not values:
            return
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unwritten.append(([{"book": book, "key": key, "value": value} for key, value in values.items()], stored))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write())
        await asyncio.shield(stored)

    @whole
    async def _write(self) -> None:
        await asyncio.sleep(0)  # the other writers of this turn join the transaction
        batch, self._unwritten, self._writing = self._unwritten, [], None
        try:
            await self._init()
            async with self.engine.begin() as conn:
                await conn.execute(insert_new(conn.dialect.name, t.notes), [row for rows, _ in batch for row in rows])
        except BaseException as exc:
            for _, stored in batch:
                if not stored.done():
                    stored.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, stored in batch:
            if not stored.done():
                stored.set_result(None)
