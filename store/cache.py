"""The call cache: a model's answer by the fingerprint of the call, so no identical call is paid twice.

The panel computes the fingerprint (agents.calls.fingerprint) and decides what is cacheable; this
module only keeps rows. The first answer stored for a key stays: a concurrent identical call
that finishes second does not overwrite it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.migrate import setup_schema
from cadsynth.store.upsert import insert_new


class CallCache:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._ready = False

    @whole
    async def _init(self) -> None:
        if not self._ready:
            async with self.engine.connect() as conn:
                await conn.run_sync(setup_schema)
            self._ready = True

    async def get(self, key: str) -> dict[str, Any] | None:
        await self._init()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.call_cache.c.value).where(t.call_cache.c.key == key))).first()
        return row[0] if row else None

    @whole
    async def put(self, key: str, agent: Any, value: dict[str, Any], usage: Any) -> None:
        """Keep `value` under `key`; `agent` (an AgentConfig) and `usage` are kept for inspection."""
        await self._init()
        row = {
            "key": key,
            "agent": agent.name,
            "provider": agent.provider,
            "model": agent.model,
            "value": value,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }
        async with self.engine.begin() as conn:
            await conn.execute(insert_new(conn.dialect.name, t.call_cache), [row])
