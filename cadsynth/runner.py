"""Drives the debate graph for one run: checkpointer, lease, progress, clean shutdown."""

from __future__ import annotations

import os
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import make_url

from cadsynth.config import RunConfig
from cadsynth.graphs.debate import build_graph
from cadsynth.graphs.settings import Settings, close_resources, resources


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class Progress:
    """What the live display shows; updated from the graph's stream of node updates."""

    run: str
    round: int = 0
    phase: str = "starting"
    counts: Counter[str] = field(default_factory=Counter)

    def observe(self, node: str, update: Any) -> None:
        self.phase = node
        if node in ("keep", "adversarial", "discard"):
            self.counts[node] += 1
        if isinstance(update, dict) and "round" in update:
            self.round = update["round"]


@asynccontextmanager
async def checkpointer(db_url: str) -> AsyncIterator[BaseCheckpointSaver]:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        raise ValueError(f"database URL {db_url!r}: only sqlite is supported for checkpoints so far")
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(url.database or ":memory:") as saver:
        yield saver


async def execute(
    settings: Settings,
    run: str,
    config: RunConfig | None,
    on_update: Callable[[Progress], None] | None = None,
) -> Progress:
    """Start `run` with `config`, or (config None) continue it from its last checkpoint."""
    res = resources(settings)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    progress = Progress(run=run)
    try:
        if config is not None:
            await res.ledger.start_run(run, config.model_dump(mode="json"), config.seed)
        await res.ledger.acquire_lease(run, owner, seconds=24 * 3600)
        try:
            async with checkpointer(settings.db_url) as saver:
                graph = build_graph().compile(checkpointer=saver)
                thread = {"configurable": {"thread_id": run}, "recursion_limit": 10_000}
                start = {"run": run, "config": config.model_dump(mode="json")} if config is not None else None
                async for chunk in graph.astream(start, thread, context=settings, stream_mode="updates"):
                    for node, update in chunk.items():
                        progress.observe(node, update)
                    if on_update:
                        on_update(progress)
            progress.phase = "done"
        finally:
            await res.ledger.release_lease(run, owner)
    finally:
        await close_resources()
    return progress
