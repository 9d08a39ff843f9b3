"""The call cache: a model's answer by the fingerprint of the call, so no identical call is paid twice.

The panel computes the fingerprint (agents.calls.fingerprint) and decides what is cacheable; this
module only keeps rows. The first answer stored for a key stays: a concurrent identical call
that finishes second does not overwrite it.

Every call of every panel asks the cache, so it is cheap to ask:
* a process reads the keys stored before it started into a Bloom filter (`MaybeKept`, 2 MiB
  whatever the store holds) and adds each answer it keeps: a key the filter has never seen is a
  miss without a query. (So an answer another process keeps while this one runs is not seen
  here: two live processes may each pay for the same call. Resume and replay start a process,
  which sees everything.)
* the lookups made in one turn of the event loop are answered by one query;
* answers are written behind, many in one transaction, a moment after they arrive and whenever
  the process closes its store (`flush`). An answer is in the cache at once for this process; a
  process killed in that moment loses only those rows, never a paid-for answer: LangGraph saved
  each finished call's result with its task, and resume does not ask it again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.migrate import SetUpOnce
from cadsynth.store.patience import patient
from cadsynth.store.upsert import insert_new

class MaybeKept:
    """A Bloom filter of cache keys (sha256 hex): no false misses, about one false hit in a
    thousand at a million keys."""

    BITS = 1 << 24

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS // 8)

    @staticmethod
    def _spots(key: str) -> tuple[int, ...]:
        return tuple(int(key[i : i + 6], 16) for i in (0, 6, 12))  # three independent 24-bit slices

    def add(self, key: str) -> None:
        for spot in self._spots(key):
            self.bits[spot >> 3] |= 1 << (spot & 7)

    def __contains__(self, key: str) -> bool:
        return all(self.bits[spot >> 3] & (1 << (spot & 7)) for spot in self._spots(key))


WRITE_BEHIND_SECONDS = 1.0  # how long an answer waits for others to share its transaction
READ_BATCH = 500  # keys per lookup query: under every backend's bound-parameter limit


class CallCache:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._set_up = SetUpOnce(engine, then=self._read_keys)
        self._maybe = MaybeKept()
        self._unwritten: dict[str, dict[str, Any]] = {}  # rows kept but not yet in the database
        self._wanted: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self._reading: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()  # one write at a time: close waits for the one under way

    @whole
    async def _init(self) -> None:
        await self._set_up()

    async def _read_keys(self, conn: AsyncConnection) -> None:
        """The keys stored before this process started, into the filter."""
        stored = await conn.stream(select(t.call_cache.c.key).execution_options(yield_per=10_000))
        async for (key,) in stored:
            self._maybe.add(key)

    async def get(self, key: str) -> dict[str, Any] | None:
        if key in self._unwritten:
            return self._unwritten[key]["value"]
        if not self._set_up.ready:
            await self._init()
        if key not in self._maybe:
            return None
        found: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(key, []).append(found)
        if self._reading is None:
            self._reading = asyncio.create_task(self._read())
        return await found

    async def _read(self) -> None:
        """Answer every lookup made meanwhile with one query (per READ_BATCH keys)."""
        await asyncio.sleep(0)  # the other calls of this turn ask too
        wanted, self._wanted, self._reading = self._wanted, {}, None
        try:
            values = await self._lookup(sorted(wanted))
        except BaseException as exc:
            for futures in wanted.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, futures in wanted.items():
            for future in futures:
                if not future.done():
                    future.set_result(values.get(key))

    @patient
    async def _lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        await self._init()
        values = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(keys), READ_BATCH):
                query = select(t.call_cache.c.key, t.call_cache.c.value).where(t.call_cache.c.key.in_(keys[start : start + READ_BATCH]))
                values.update({key: value for key, value in await conn.execute(query)})
        return values

    async def put(self, key: str, agent: Any, value: dict[str, Any], usage: Any) -> None:
        """Keep `value` under `key`; `agent` (an AgentConfig) and `usage` are kept for inspection."""
        self._maybe.add(key)
        self._unwritten.setdefault(key, {
            "key": key,
            "agent": agent.name,
            "provider": agent.provider,
            "model": agent.model,
            "value": value,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        })
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        await asyncio.sleep(WRITE_BEHIND_SECONDS)
        await self.flush()

    @whole
    async def flush(self) -> None:
        """Write every answer kept so far, in one transaction."""
        self._writing = None
        async with self._flushing:
            rows = list(self._unwritten.values())
            if not rows:
                return
            await self._init()
            async with self.engine.begin() as conn:
                await conn.execute(insert_new(conn.dialect.name, t.call_cache), rows)
            for row in rows:  # only once written: until then this process answers from memory
                self._unwritten.pop(row["key"], None)

    async def close(self) -> None:
        """Write what is left; the store's engine may close after this."""
        if self._writing is not None:
            self._writing.cancel()
        await self.flush()
