"""What the run registry (store.runs) and the records (store.records) share: one engine, and the
ledger's tables set up (for a writer) or checked (for a reader) once per ledger.

`cadsynth.store.ledger.Ledger` joins the two on this base, so both halves use the same connections.
"""

from __future__ import annotations

from typing import Self

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from cadsynth.store import schema as t
from cadsynth.store.db import async_engine, whole
from cadsynth.store.migrate import check_version, setup_schema


class LedgerBase:
    def __init__(self, engine: AsyncEngine, *, create: bool = True):
        self.engine = engine
        self.create = create  # False for readers: a database without the ledger reads as empty
        self._ready = False
        self._empty = False

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Self:
        return cls(async_engine(url), create=create)

    async def close(self) -> None:
        await self.engine.dispose()

    @whole
    async def init(self) -> None:
        if self._ready:
            return
        if self.create:
            async with self.engine.connect() as conn:
                await conn.run_sync(setup_schema)
        else:
            async with self.engine.connect() as conn:
                # The runs table is the ledger's root: without it nothing else was ever written.
                self._empty = not await conn.run_sync(lambda c: inspect(c).has_table(t.runs.name))
                if not self._empty:
                    await conn.run_sync(check_version)
        self._ready = True
