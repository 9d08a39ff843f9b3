"""Drives the debate graph for one run: start, resume or fork it; checkpoints, lease, progress."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from cadsynth.agents.calls import ModelCallError

from cadsynth.config import RunConfig
from cadsynth.graphs.debate import build_graph
from cadsynth.graphs.settings import Settings, close_resources, resources
from cadsynth.store import open_checkpointer
from cadsynth.graphs.state import DebateState
from cadsynth.store.ledger import LEASE_SECONDS, Ledger, lease_owner


Debate = CompiledStateGraph[DebateState, Settings, DebateState, DebateState]


class RunStateError(RuntimeError):
    """The run cannot do what was asked (already finished, no such round...)."""


class RunFailed(RuntimeError):
    """The run stopped and is marked failed; the message is its one-line reason, kept in the ledger."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ModelCallError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


async def _kept_nothing(ledger: Ledger, run: str, kept: int) -> str | None:
    """A run that kept nothing because its calls gave up has not succeeded: say why."""
    if kept:
        return None
    faults = (await ledger.call_breakdown(run))["faults"]
    gave_up = faults.get("abstained", 0) + faults.get("dropped", 0)
    if not gave_up:
        return None
    kinds = ", ".join(f"{k} {n}" for k, n in faults.items() if k not in ("retried", "abstained", "dropped") and n)
    return f"kept no samples: {gave_up} model calls gave up after their retries ({kinds}); see `cads stats {run}`"


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def thread(run: str) -> RunnableConfig:
    # No max_concurrency here: LangGraph gates its checkpoint writes behind the same semaphore,
    # so finished tasks would wait to be saved. The panel bounds calls in flight instead.
    return {"configurable": {"thread_id": run}, "recursion_limit": 100_000}


@dataclass
class Progress:
    """What the live display shows; updated from the graph's stream of node updates."""

    run: str
    round: int = 0
    phase: str = "starting"
    counts: Counter[str] = field(default_factory=Counter)
    stopped: dict[str, Any] | None = None  # why the run paused (its budget), when it did

    def observe(self, node: str, update: Any) -> None:
        self.phase = node
        if node in ("keep", "adversarial", "discard"):
            self.counts[node] += 1
        if isinstance(update, dict) and "round" in update:
            self.round = update["round"]


@dataclass(frozen=True)
class Fork:
    """Start a new run from `parent`'s checkpoint before `round`, optionally with another config."""

    parent: str
    round: int
    config: RunConfig | None = None


async def _heartbeat(ledger: Ledger, run: str, owner: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        await ledger.acquire_lease(run, owner)


async def _fork_checkpoint(graph: Debate, parent: str, round_: int) -> RunnableConfig:
    """The parent's checkpoint where round `round_` is about to open."""
    async for snapshot in graph.aget_state_history(thread(parent)):
        if snapshot.next == ("open_round",) and snapshot.values.get("round") == round_:
            return snapshot.config
    raise RunStateError(f"run {parent!r} has no checkpoint before round {round_}; `cads stats {parent}` shows its rounds")


async def _start_fork(graph: Debate, saver: Any, ledger: Ledger, run: str, fork: Fork) -> None:
    if fork.round < 1:
        raise RunStateError("replay needs --round 1 or later: a fork shares the rounds before it (round 0 is a new run)")
    parent = await ledger.run(fork.parent)
    if parent is None:
        raise RunStateError(f"no run {fork.parent!r} in this database; `cads runs` lists the runs")
    at = await _fork_checkpoint(graph, fork.parent, fork.round)
    config = fork.config.model_dump(mode="json") if fork.config else parent["config"]
    await ledger.start_run(run, config, config["seed"], parent=fork.parent, fork_round=fork.round)
    # The fork keeps the parent's history (so Studio can browse it) and branches at the round.
    await saver.acopy_thread(fork.parent, run)
    branch: RunnableConfig = {"configurable": {**at["configurable"], "thread_id": run}}
    await graph.aupdate_state(branch, {"run": run, "config": config}, as_node="adversary")


async def execute(
    settings: Settings,
    run: str,
    config: RunConfig | None = None,
    *,
    fork: Fork | None = None,
    on_update: Callable[[Progress], None] | None = None,
    budget: float | None = None,
) -> Progress:
    """Start `run` with `config`; fork it from another run; or (neither) resume it where it stopped.

    `budget` (USD) is kept with the run; a run stopped at its budget continues when resumed with a
    higher one. Returns with `progress.phase == "stopped"` when the run paused at its budget.
    """
    ledger = resources(settings).ledger
    owner = lease_owner()
    progress = Progress(run=run)
    heartbeat: asyncio.Task[None] | None = None
    try:
        if config is not None and fork is None:
            await ledger.start_run(run, config.model_dump(mode="json"), config.seed)
        elif fork is None:
            record = await ledger.run(run)
            if record is None:
                raise RunStateError(f"no run {run!r} in this database; `cads runs` lists the runs")
            if record["status"] == "done":
                raise RunStateError(f"run {run!r} has finished; `cads replay {run} --round N` forks it into a new run")
        async with open_checkpointer(settings.db_url) as saver:
            graph = build_graph().compile(checkpointer=saver)
            if fork is not None:
                await _start_fork(graph, saver, ledger, run, fork)
            await ledger.acquire_lease(run, owner)
            heartbeat = asyncio.create_task(_heartbeat(ledger, run, owner))
            await ledger.set_status(run, "running")  # a resumed run that had failed runs again
            if budget is not None:
                await ledger.set_budget(run, budget)
            start: Any = None  # a new run's input, a Command answering an interrupt, or None to resume
            if (await graph.aget_state(thread(run))).interrupts:
                # Stopped at its budget: answer the interrupt (open_round checks the budget again).
                await ledger.set_status(run, "running")
                start = Command(resume={"budget_usd": budget})
            elif config is not None and fork is None:
                start = {"run": run, "config": config.model_dump(mode="json")}
            elif not (await graph.aget_state(thread(run))).values:
                # Killed before the first checkpoint: start over from the stored config.
                stored = await ledger.run(run)
                assert stored is not None
                start = {"run": run, "config": stored["config"]}
            # durability="sync": a step's checkpoint is on disk before the next step's calls start.
            stream = graph.astream(start, thread(run), context=settings, stream_mode="updates", durability="sync")
            try:
                async for chunk in stream:
                    for node, update in chunk.items():
                        progress.observe(node, update)
                    if on_update:
                        on_update(progress)
                final = await graph.aget_state(thread(run))
                pending = final.interrupts
                why = None if pending else await _kept_nothing(ledger, run, final.values.get("kept", 0))
            except Exception as exc:
                # Whatever stopped the run (an unreachable endpoint, a rejected key, a full disk),
                # it is failed, with its reason, not left `running`; `cads resume` continues it.
                await ledger.set_status(run, "failed", _reason(exc))
                raise RunFailed(_reason(exc)) from exc
            if why:
                await ledger.set_status(run, "failed", why)
                raise RunFailed(why)
            progress.stopped = pending[0].value if pending else None
            progress.phase = "stopped" if pending else "done"
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
            await ledger.release_lease(run, owner)
        await close_resources()
    return progress
