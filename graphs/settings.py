"""Where a run keeps its things: the graph's runtime context (set by the CLI, Studio or a script)."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cadsynth.agents.batch import BatchOffice
from cadsynth.agents.calls import InFlight
from cadsynth.agents.limits import adaptive_concurrency
from cadsynth.agents.panel import Panel
from cadsynth.config import RunConfig
from cadsynth.domain import Context
from cadsynth.store.batches import BatchStore
from cadsynth.store.blobs import BlobStore
from cadsynth.store.cache import CallCache
from cadsynth.store.ledger import Ledger
from cadsynth.store.notes import Notes


@dataclass
class Settings:
    db_url: str = field(default_factory=lambda: os.environ.get("CADS_DB", "sqlite:///cads.db"))
    data_dir: str = field(default_factory=lambda: os.environ.get("CADS_DATA", "cads-data"))
    cache: bool = True  # answer identical model calls from the store's call cache
    detach: bool = False  # stop once a batching run's jobs are sent (`--detach`); `cads resume` collects them


@dataclass(frozen=True)
class Run:
    """One run as a process advances it: its config, validated once from the ledger's row (the one
    record of it: the graph's state does not carry it). Its panel: `Resources.panel_of`."""

    id: str
    config: RunConfig


class Resources:
    """The ledger, blob store and panels one event loop uses for one database."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ledger = Ledger.open(settings.db_url)
        self.in_flight = InFlight()  # every panel's calls: a stop (cadsynth.runner) refuses those not yet sent
        self._panels: dict[str, Panel] = {}
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._runs: dict[str, Run] = {}
        self._run_panels: dict[str, Panel] = {}
        # A future per (run, round): a round's problems all ask for its context at once, and one
        # read answers them all.
        self._contexts: dict[tuple[str, int], asyncio.Future[Context]] = {}

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(Path(self.settings.data_dir))

    @cached_property
    def cache(self) -> CallCache | None:
        return CallCache(self.ledger.engine) if self.settings.cache else None

    @cached_property
    def notes(self) -> Notes:
        return Notes(self.ledger.engine)

    @cached_property
    def batches(self) -> BatchOffice:
        return BatchOffice(BatchStore(self.ledger.engine), detach=self.settings.detach)

    async def run(self, run: str) -> Run:
        """The run by its id: its config and panel, read and validated once in this process."""
        if run not in self._runs:
            record = await self.ledger.run(run, derive=False)
            if record is None:
                raise LookupError(f"no run {run!r} in the ledger")
            self._runs[run] = Run(run, RunConfig.model_validate(record["config"]))
        return self._runs[run]

    def _keep_context(self, run: str, round_: int, slot: asyncio.Future[Context]) -> None:
        self._contexts = {k: v for k, v in self._contexts.items() if k[0] != run}  # one round per run
        self._contexts[(run, round_)] = slot

    def remember_context(self, run: str, round_: int, context: Context) -> None:
        """open_round has just stored the round's context: its tasks need not read it back."""
        slot = asyncio.get_running_loop().create_future()
        slot.set_result(context)
        self._keep_context(run, round_, slot)

    async def _read_context(self, run: str, round_: int) -> Context:
        context = await self.ledger.context(run, round_)
        if context is None:
            raise LookupError(f"run {run!r} has no context for round {round_}")
        return context

    async def round_context(self, run: str, round_: int) -> Context:
        """The context that steers the round (open_round stored it before any task of the round)."""
        slot = self._contexts.get((run, round_))
        if slot is None or (slot.done() and (slot.cancelled() or slot.exception() is not None)):  # a failed read is tried again
            slot = asyncio.ensure_future(self._read_context(run, round_))
            self._keep_context(run, round_, slot)
        return await asyncio.shield(slot)  # a caller cancelled does not cancel the others' read

    async def panel_of(self, run: str) -> Panel:
        """The run's agents: built when a node first asks one (a missing key fails that node, and
        so the run, with its reason)."""
        if run not in self._run_panels:
            self._run_panels[run] = self.panel((await self.run(run)).config)
        return self._run_panels[run]

    def panel(self, config: RunConfig) -> Panel:
        """The run's panel, built once: every task of a run shares its agents and call gate, and
        the lanes of a run (configs that differ only in lane, seed and target) share the gate."""
        dumped = config.model_dump(mode="json")
        key = json.dumps(dumped, sort_keys=True)
        if key not in self._panels:
            shared = json.dumps({k: v for k, v in dumped.items() if k not in ("lane", "seed", "target")}, sort_keys=True)
            gate = (
                None if config.concurrency == "auto"  # each endpoint finds its own (RunConfig.limit)
                else self._gates.setdefault(shared, asyncio.Semaphore(config.concurrency))
            )
            self._panels[key] = Panel(
                config, cache=self.cache, images=self.blobs, gate=gate, notes=self.notes, in_flight=self.in_flight,
                batches=self.batches if config.batch else None,
            )
        return self._panels[key]

    def concurrency(self) -> dict[str, tuple[int, int]]:
        """The adaptive concurrencies of this loop's panels now: endpoint -> (value, in flight)."""
        return adaptive_concurrency(
            agent.caller.limiter for panel in self._panels.values() for agent in panel.agents.values()
        )

    async def close(self) -> None:
        cache = self.__dict__.get("cache")  # made on first use (a cached_property)
        batches = self.__dict__.get("batches")
        try:
            if batches is not None:
                await batches.close()
            if cache is not None:
                await cache.close()
        finally:
            await self.ledger.close()


# Database engines belong to the event loop that made them, so resources are kept per loop.
_open: dict[tuple[int, str, str, bool, bool], Resources] = {}


async def resources(settings: Settings | None) -> Resources:
    settings = settings or Settings()
    key = (id(asyncio.get_running_loop()), settings.db_url, settings.data_dir, settings.cache, settings.detach)
    if key not in _open:
        # Made in a thread: opening the ledger resolves a relative SQLite path (os.getcwd), a
        # blocking call the LangGraph server refuses on its event loop.
        made = await asyncio.to_thread(Resources, settings)
        if key in _open:  # another task of the step made them meanwhile
            await made.close()
        else:
            _open[key] = made
    return _open[key]


async def close_resources() -> None:
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _open if k[0] == loop]:
        await _open.pop(key).close()
