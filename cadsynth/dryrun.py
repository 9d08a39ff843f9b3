"""`cads run --dry-run`: what a real run would take, in calls, tokens and dollars, before it is paid for.

Every agent is swapped for a simulated stand-in that keeps its name, roles and model name (for the
price), and the whole run is played in a throwaway SQLite database. The stand-ins receive the real
panel's rendered prompts and images, so token counts follow the prompts; how many rounds, revisions
and retries a real panel needs is the simulator's guess. No network, no API key.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadsynth.config import RunConfig
from cadsynth.graphs.settings import Settings
from cadsynth.runner import execute
from cadsynth.store.ledger import Ledger

RUN = "dry-run"


def stand_ins(config: RunConfig) -> RunConfig:
    """The config with every agent simulated; provider limits do not apply to the simulator."""
    panel = [
        agent.model_copy(
            update={
                "provider": "sim",
                "base_url": None,
                "api_key_env": None,
                "stand_in_for": None if agent.provider == "sim" else agent.provider,
            }
        ).model_dump()
        for agent in config.panel
    ]
    return RunConfig.model_validate({**config.model_dump(), "panel": panel, "limits": []})


@dataclass(frozen=True)
class Estimate:
    # per agent: agent, provider, model, priced, calls, input_tokens, output_tokens, usd, and batch_usd:
    # the same tokens at the batch price when the agent batches (`batch: true`), else usd again
    rows: list[dict[str, Any]]
    total: dict[str, Any]
    rounds: int
    proposals: int
    kept: int


async def _play(config: RunConfig, folder: Path) -> Estimate:
    settings = Settings(db_url=f"sqlite:///{folder / 'dry-run.db'}", data_dir=str(folder / "data"), cache=False)
    await execute(settings, RUN, stand_ins(config))
    ledger = Ledger.open(settings.db_url)
    try:
        breakdown = await ledger.call_breakdown(RUN)
        totals = await ledger.call_totals(RUN)
        rounds = await ledger.rounds(RUN)
    finally:
        await ledger.close()
    rows = []
    for agent in config.panel:
        used = breakdown["by_agent"].get(agent.name, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0})
        price = config.price(agent.model)
        batched = price.batched() if price is not None and config.batches(agent) else None
        rows.append(
            {"agent": agent.name, "provider": agent.provider, "model": agent.model, "priced": price is not None}
            | used
            | {"batch_usd": used["usd"] if batched is None
               else (used["input_tokens"] * batched.input + used["output_tokens"] * batched.output) / 1e6}
        )
    total = {"calls": totals["calls"], "input_tokens": totals["input_tokens"], "output_tokens": totals["output_tokens"], "usd": totals["usd"],
             "batch_usd": sum(r["batch_usd"] for r in rows)}
    return Estimate(
        rows=rows,
        total=total,
        rounds=len(rounds),
        proposals=sum(r.proposals for r in rounds),
        kept=sum(r.kept for r in rounds),
    )


def estimate(config: RunConfig) -> Estimate:
    with tempfile.TemporaryDirectory(prefix="cads-dry-run-") as folder:
        return asyncio.run(_play(config, Path(folder)))
