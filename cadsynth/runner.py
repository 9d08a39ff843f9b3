"""Drives the debate graph for one run: start, resume or fork it; checkpoints, lease, progress, and
a graceful stop (`Stop`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl
from langgraph.types import Command


from cadsynth import lifecycle
from cadsynth.agents import batch
from cadsynth.agents.calls import InFlight
from cadsynth.config import RunConfig
from cadsynth.domain import Outcome
from cadsynth.graphs import dedup
from cadsynth.graphs.consensus import tally
from cadsynth.graphs.debate import build_graph
from cadsynth.graphs.settings import Settings, close_resources, resources
from cadsynth.store import open_checkpointer, thread_id
from cadsynth.graphs.state import DebateState
from cadsynth.store.ledger import LEASE_SECONDS, Ledger, LeaseError, lease_owner
from cadsynth.store.patience import DatabaseUnavailable, outage


REFRESH_SECONDS = 2.0  # how often the live display reads the ledger while lanes run here

Debate = CompiledStateGraph[DebateState, Settings, DebateState, DebateState]
# Runs a run's unfinished lanes somewhere else (a Ray cluster): (settings, run, lane ids, each
# lane's budget, progress, on_update, stop) -> why lanes paused (their budget, a review, a stop).
LaneRunner = Callable[
    [Settings, str, list[str], "float | None", "Progress", "Callable[[Progress], None] | None", "Stop"],
    Awaitable[list[dict[str, Any]]],
]
GRACE_SECONDS = 30.0  # how long a stopping run waits for its calls in flight
# Allocations between collections of the young generation while lanes run (Python's default: 700).
YOUNG_COLLECTION = 10_000


class RunStateError(RuntimeError):
    """The run cannot do what was asked (already finished, no such round...)."""


class RunFailed(RuntimeError):
    """The run stopped and is marked failed; the message is its one-line reason, kept in the ledger."""


def new_run_id(kind: str = "run") -> str:
    """`run-20261207-101500-ab12`; `cads check` names its runs `check-...`."""
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def lane_id(run: str, lane: int) -> str:
    return f"{run}.lane{lane}"


def thread(run: str) -> RunnableConfig:
    # No max_concurrency here: LangGraph gates its checkpoint writes behind the same semaphore,
    # so finished tasks would wait to be saved. The panel bounds calls in flight instead.
    return {"configurable": {"thread_id": thread_id(run)}, "recursion_limit": 100_000}


@dataclass
class Progress:
    """What the live display shows. The phase comes from the graphs' streams (in this process); the
    round, the outcomes and the finished lanes from the ledger (`refresh`), on every path: lanes
    here or on Ray count alike."""

    run: str
    lanes: int = 1
    round: int = 0  # the furthest lane's round
    phase: str = "starting"
    outcomes: Counter[str] = field(default_factory=Counter)  # recorded consensus outcomes, every lane
    lanes_done: int = 0
    stopped: dict[str, Any] | None = None  # why the run paused (its budget), when it did
    waiting: list[dict[str, Any]] = field(default_factory=list)  # the rounds paused for review (graphs.review)
    refreshed: float = 0.0  # when the ledger was last read (time.monotonic)
    # `concurrency: auto`: each endpoint's value and requests in flight, and the values last
    # written to the ledger (stats show them over the run).
    concurrency: dict[str, tuple[int, int]] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """kept, adversarial, discarded, dropped: the counts every report uses (graphs.consensus.tally)."""
        return tally(cast("Iterator[Outcome]", self.outcomes.elements()))

    @property
    def batch_wait(self) -> str | None:
        """What the batch jobs in flight wait for, while a batching run waits on them (agents.batch)."""
        return batch.waiting()

    @property
    def database_away(self) -> str | None:
        """How long the store has been waiting for its database, while it is (store.patience)."""
        return outage.describe()

    def observe(self, node: str, update: Any) -> None:
        self.phase = node
        if isinstance(update, dict) and "round" in update:
            self.round = max(self.round, update["round"])


async def refresh(
    ledger: Ledger, run: str, progress: Progress, *, every: float = 0.0,
    concurrency: Callable[[], dict[str, tuple[int, int]]] | None = None,
) -> None:
    """Read the run's progress from the ledger (at most once in `every` seconds): its lanes'
    furthest round, recorded outcomes and how many are done. Write the adaptive concurrencies,
    read by `concurrency` (this process's panels) or put in `progress` (on Ray: the driver, from
    the desks), when they changed."""
    if time.monotonic() - progress.refreshed < every:
        return
    progress.refreshed = time.monotonic()
    if concurrency is not None:
        progress.concurrency.update(concurrency())
    lanes = await ledger.lane_progress(run)
    progress.outcomes = Counter()
    for lane in lanes:
        progress.outcomes.update(lane["outcomes"])
    progress.round = max([progress.round, *(lane["round"] for lane in lanes)])
    progress.lanes_done = sum(lane["status"] == "done" for lane in lanes)
    changed = [(endpoint, time.time(), value, in_flight) for endpoint, (value, in_flight) in progress.concurrency.items()
               if progress.recorded.get(endpoint) != value]
    if changed:
        await ledger.put_concurrency(run, changed)
        progress.recorded.update({endpoint: value for endpoint, _, value, _ in changed})


class Stop:
    """A graceful stop, asked for from outside the run: a signal (the CLI; a Ray driver passes it on
    to its lanes, cadsynth.cluster).

    Asked once, no model call starts any more (graphs.calls: a refused call drains the graph, and
    LangGraph starts no new step), the calls in flight finish and are recorded, and every lane ends
    where it stands. Its status stays `running`, which reads `interrupted` once its process has
    gone (store.runs.shown_status), and `cads resume` continues it. Calls still in flight `grace`
    seconds later are abandoned; asked again, the run stops at once, abandoning them too. Either
    way `execute` returns with `phase == "interrupted"`.
    """

    def __init__(self, grace: float = GRACE_SECONDS):
        self.grace = grace
        self.control = RunControl()  # LangGraph's: a drained graph starts no new step
        self.asked = 0  # how many times
        self.signal: int | None = None  # the last signal that asked
        self.in_flight = 0  # the calls in flight when it was first asked
        self.abandoned = 0  # ... of which were still in flight when the run stopped waiting
        self._calls: InFlight | None = None
        self._deadline: asyncio.Timeout | None = None
        self._give_up: asyncio.TimerHandle | None = None

    @property
    def saved(self) -> int:
        return self.in_flight - self.abandoned

    def ask(self, signal: int | None = None) -> None:
        self.asked += 1
        self.signal = signal or self.signal
        self._apply()

    def attach(self, calls: InFlight, deadline: asyncio.Timeout) -> None:
        """The calls of the process advancing the run, and the timeout around it that cuts the wait short."""
        self._calls, self._deadline = calls, deadline
        self._apply()

    def detach(self) -> None:
        """The run has ended: nothing is left to stop."""
        if self._give_up is not None:
            self._give_up.cancel()
        self._calls = self._deadline = None

    def _apply(self) -> None:
        if not self.asked or self._calls is None:
            return  # asked before the run began: applied once it is attached
        if not self._calls.stopping:
            self.in_flight = len(self._calls.calls)
            self._calls.stop()
            self.control.request_drain("stop")
            self._give_up = asyncio.get_running_loop().call_later(self.grace, self._stop_waiting)
        if self.asked > 1:
            self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
        if self._calls is not None and self._deadline is not None and not self._deadline.expired():
            self.abandoned = len(self._calls.calls)
            self._deadline.reschedule(asyncio.get_running_loop().time())  # cancels the run where it stands


@dataclass(frozen=True)
class Fork:
    """Start a new run from `parent`'s checkpoint before `round`, optionally with another config.

    A parent with lanes is forked lane by lane; `lane` forks that one lane into a run of its own.
    """

    parent: str
    round: int
    config: RunConfig | None = None
    lane: int | None = None


@dataclass
class Lane:
    """One debate to advance: its run id (the run itself when it has no lanes) and how to start it."""

    run: str
    start: Any = None  # a new lane's input, a Command answering an interrupt, or None to resume


async def _heartbeat(ledger: Ledger, runs: list[str], owner: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        for run in runs:
            await ledger.acquire_lease(run, owner)  # a renewal: it was taken when the run began


async def _let_go(ledger: Ledger, held: list[str], owner: str, heartbeat: asyncio.Task[None] | None) -> None:
    """Release this process's leases and close its store, however the run ended. A database that
    stayed away past the patience is not waited for again: the run's failure line says so, and a
    lease left behind frees itself (its holder is gone)."""
    if heartbeat is not None:
        heartbeat.cancel()
        if heartbeat.done() and not heartbeat.cancelled():
            heartbeat.exception()  # a renewal the outage stopped: the run's own failure says why
    with contextlib.suppress(DatabaseUnavailable):
        for member in held:
            await ledger.release_lease(member, owner)
    with contextlib.suppress(DatabaseUnavailable):
        await close_resources()


async def _fork_checkpoint(graph: Debate, parent: str, round_: int) -> RunnableConfig:
    """The parent's checkpoint where round `round_` is about to open."""
    async for snapshot in graph.aget_state_history(thread(parent)):
        if snapshot.next == ("open_round",) and snapshot.values.get("round") == round_:
            return snapshot.config
    raise RunStateError(f"run {parent!r} has no checkpoint before round {round_}; `cads stats {parent}` shows its rounds")


async def _fork_one(graph: Debate, saver: Any, ledger: Ledger, run: str, parent: str, round_: int,
                    config: dict[str, Any], lane_of: str | None = None, lane: int | None = None) -> None:
    at = await _fork_checkpoint(graph, parent, round_)
    await lifecycle.begin(ledger, run, config, config["seed"], parent=parent, fork_round=round_, lane_of=lane_of, lane=lane)
    # The fork keeps the parent's history (so Studio can browse it) and branches at the round.
    await saver.acopy_thread(thread_id(parent), thread_id(run))
    branch: RunnableConfig = {"configurable": {**at["configurable"], "thread_id": thread_id(run)}}
    # Its config is its ledger row's (lifecycle.begin above); an older checkpoint's copy is cleared.
    await graph.aupdate_state(branch, {"run": run, "config": None}, as_node="adversary")


async def _start_fork(graph: Debate, saver: Any, ledger: Ledger, run: str, fork: Fork) -> list[Lane]:
    if fork.round < 1:
        raise RunStateError("replay needs --round 1 or later: a fork shares the rounds before it (round 0 is a new run)")
    parent = await ledger.run(fork.parent)
    if parent is None:
        raise RunStateError(f"no run {fork.parent!r} in this database; `cads runs` lists the runs")
    lanes = await ledger.lanes(fork.parent)
    if fork.lane is not None:  # one lane of the parent becomes a run of its own
        if fork.lane >= len(lanes):
            raise RunStateError(f"run {fork.parent!r} has no lane {fork.lane}")
        source = lanes[fork.lane]
        config = fork.config.model_dump(mode="json") if fork.config else source["config"]
        config = {**config, "lanes": 1, "lane": None}
        await _fork_one(graph, saver, ledger, run, source["id"], fork.round, config)
        return [Lane(run)]
    config = fork.config.model_dump(mode="json") if fork.config else parent["config"]
    if not lanes:
        await _fork_one(graph, saver, ledger, run, fork.parent, fork.round, config)
        return [Lane(run)]
    validated = RunConfig.model_validate(config)
    if validated.lanes != len(lanes):
        raise RunStateError(f"run {fork.parent!r} has {len(lanes)} lanes; the fork's config must keep lanes: {len(lanes)}")
    await lifecycle.begin(ledger, run, config, validated.seed, parent=fork.parent, fork_round=fork.round)
    for i, source in enumerate(lanes):
        lane_config = validated.lane_config(i).model_dump(mode="json")
        await _fork_one(graph, saver, ledger, lane_id(run, i), source["id"], fork.round, lane_config, lane_of=run, lane=i)
    return [Lane(lane_id(run, i)) for i in range(len(lanes))]


async def _start(ledger: Ledger, run: str, config: RunConfig) -> list[Lane]:
    """A new run, and each of its lanes as a run of its own."""
    await lifecycle.begin(ledger, run, config.model_dump(mode="json"), config.seed)
    if config.lanes == 1:
        return [Lane(run, {"run": run})]
    lanes = []
    for i in range(config.lanes):
        lane_config = config.lane_config(i)
        await lifecycle.begin(ledger, lane_id(run, i), lane_config.model_dump(mode="json"), lane_config.seed, lane_of=run, lane=i)
        lanes.append(Lane(lane_id(run, i), {"run": lane_id(run, i)}))
    return lanes


def _review_pause(interrupts: Any) -> dict[str, Any] | None:
    """The review a thread waits at (its interrupt's payload), if it waits at one."""
    return next((i.value for i in interrupts if isinstance(i.value, dict) and i.value.get("reason") == "review"), None)


async def waiting_for_review(ledger: Ledger, run: str) -> list[dict[str, Any]]:
    """The review pauses of a run: each waiting lane's (or the run's own) round and its problems."""
    members = await ledger.lanes(run) or [r for r in [await ledger.run(run)] if r is not None]
    async with open_checkpointer(engine=ledger.engine) as saver:
        graph = build_graph().compile(checkpointer=saver)
        pauses = [_review_pause((await graph.aget_state(thread(m["id"]))).interrupts) for m in members]
    return [p for p in pauses if p is not None]


async def _to_resume(graph: Debate, ledger: Ledger, run: str, answers: dict[str, Any] | None = None) -> list[Lane]:
    """The unfinished lanes (or the run) to advance; `answers` answers the lanes waiting for review."""
    record = await ledger.run(run)
    if record is None:
        raise RunStateError(f"no run {run!r} in this database; `cads runs` lists the runs")
    if record["status"] == "done":
        raise RunStateError(f"run {run!r} has finished; `cads replay {run} --round N` forks it into a new run")
    members = await ledger.lanes(run) or [record]
    lanes = []
    for member in members:
        if member["status"] == "done":
            continue
        state = await graph.aget_state(thread(member["id"]))
        # Killed before its first checkpoint, a lane starts over from its stored config.
        start: Any = None if state.values or state.interrupts else {"run": member["id"]}
        if answers and member["id"] in answers and _review_pause(state.interrupts) is not None:
            start = Command(resume=answers[member["id"]])  # a person's decisions (`cads review`)
        lanes.append(Lane(member["id"], start))
    return lanes


async def _advance(graph: Debate, saver: Any, settings: Settings, ledger: Ledger, lane: Lane, budget: float | None,
                   progress: Progress, on_update: Callable[[Progress], None] | None, stop: Stop) -> dict[str, Any] | None:
    """Run one lane until it ends or pauses (at its budget, for review, or stopped: returned, why); a
    failure marks it failed. A stopped lane stays `running` in the ledger: its process is going.

    Unless the run keeps every checkpoint (`checkpoints: all`), a closed round's checkpoints go
    once the next round's boundary is saved: the boundaries are what resume and replay need.
    """
    res = await resources(settings)
    record = await ledger.run(lane.run)
    thin = record is not None and record["config"].get("checkpoints", "rounds") == "rounds"
    start = lane.start
    pending = (await graph.aget_state(thread(lane.run))).interrupts if start is None else ()
    if _review_pause(pending) is not None:
        return _review_pause(pending)  # only a person's decisions move it on (`cads review`, Studio)
    if pending:
        # Stopped at its budget: answer the interrupt (open_round checks the budget again).
        start = Command(resume={"budget_usd": budget})
    try:
        # One stream a round: LangGraph's loop keeps the id of every task it ran until the stream
        # ends, and a run of 20,000 samples runs some 200,000 tasks.
        while True:
            # durability="sync": a step's checkpoint is on disk before the next step's calls start.
            stream = graph.astream(
                start, thread(lane.run), context=settings, stream_mode=["updates", "checkpoints"],
                durability="sync", interrupt_before=["open_round"], control=stop.control,
            )
            async for mode, chunk in cast(AsyncIterator[tuple[str, dict[str, Any]]], stream):
                if mode == "checkpoints":
                    if thin and chunk["next"] in (["open_round"], []):  # a round opens, or the run ends
                        await saver.aclose_round(chunk["config"])
                    continue
                for node, update in chunk.items():
                    progress.observe(node, update)
                await refresh(ledger, progress.run, progress, every=REFRESH_SECONDS, concurrency=res.concurrency)
                if on_update:
                    on_update(progress)
            final = await graph.aget_state(thread(lane.run))
            if final.interrupts or not final.next:  # paused at its budget, or finished
                break
            start = None  # at a round boundary: the next round, in a new stream
    except GraphDrained:
        return {"reason": "interrupted"}  # its calls in flight have finished and are recorded (Stop)
    except batch.BatchDetached:
        # `--detach`: its calls wait in provider batch jobs, stored; `cads resume` collects them.
        await lifecycle.waiting_for_batch(ledger, lane.run)
        return {"reason": "batch"}
    except Exception as exc:
        # The graph marks its run failed when a node raises; a failure outside its nodes (the
        # checkpointer, the store) it cannot see, so it is marked here. `cads resume` continues it.
        await lifecycle.failed(ledger, lane.run, exc)
        raise RunFailed(lifecycle.failure_reason(exc)) from exc
    record = await ledger.run(lane.run)
    if record is not None and record["status"] == "failed":  # finished, but kept nothing: the graph says why
        raise RunFailed(record["reason"])
    await refresh(ledger, progress.run, progress, concurrency=res.concurrency)
    if on_update:
        on_update(progress)
    return final.interrupts[0].value if final.interrupts else None


async def execute(
    settings: Settings,
    run: str,
    config: RunConfig | None = None,
    *,
    fork: Fork | None = None,
    on_update: Callable[[Progress], None] | None = None,
    budget: float | None = None,
    lanes_on: LaneRunner | None = None,
    review: dict[str, Any] | None = None,
    stop: Stop | None = None,
) -> Progress:
    """Start `run` with `config`; fork it from another run; or (neither) resume it where it stopped.

    A run with lanes advances every unfinished lane at once, in this process, sharing the panel's
    limits, call cache and store; the first lane to fail stops the others (each resumable).
    `lanes_on` runs the lanes elsewhere instead (`cadsynth.cluster`: on Ray, each lane under a
    lease of its own in the process advancing it); this process then holds the run's lease.
    `budget` (USD) is kept with the run and split evenly over its lanes; a run stopped at its
    budget continues when resumed with a higher one. Returns with `progress.phase == "stopped"`
    when the run paused at its budget, and "review" (with `progress.waiting`) when rounds wait for a
    person's decisions; `review` maps each waiting lane (or the run) to its answer (graphs.review);
    "waiting for batch" when it stopped with its calls in batch jobs (`settings.detach`).
    Once `stop` is asked for, it returns with "interrupted" (see `Stop`).
    """
    stop = stop or Stop()
    res = await resources(settings)
    ledger = res.ledger
    owner = lease_owner()
    progress = Progress(run=run)
    held: list[str] = []
    heartbeat: asyncio.Task[None] | None = None
    try:
        async with (
            asyncio.timeout(None) as deadline,  # what a stop's grace (or a second signal) cuts short
            open_checkpointer(engine=ledger.engine, thin_rounds=True) as saver,  # one pool for the process
        ):
            if lanes_on is None:  # lanes elsewhere are stopped there (cadsynth.cluster)
                stop.attach(res.in_flight, deadline)
            graph = build_graph().compile(checkpointer=saver)
            if fork is not None:
                lanes = await _start_fork(graph, saver, ledger, run, fork)
            elif config is not None:
                lanes = await _start(ledger, run, config)
            else:
                lanes = await _to_resume(graph, ledger, run, review)
            members = [run, *(lane.run for lane in lanes if lane.run != run)]
            for member in members if lanes_on is None else [run]:
                if await ledger.acquire_lease(member, owner):
                    await lifecycle.resumed(ledger, member)
                held.append(member)
            heartbeat = asyncio.create_task(_heartbeat(ledger, held, owner))
            total = len(await ledger.lanes(run)) or 1
            progress.lanes = total
            await refresh(ledger, run, progress)
            for member in members:
                if budget is not None:
                    await ledger.set_budget(member, budget if member == run else budget / total)
            share = None if budget is None else budget / total
            if lanes_on is not None:
                stops = await lanes_on(settings, run, [lane.run for lane in lanes], share, progress, on_update, stop)
            else:
                stops = await _advance_here(graph, saver, settings, ledger, run, lanes, share, progress, on_update, stop)
            interrupted = any(why.get("reason") == "interrupted" for why in stops)
            detached = any(why.get("reason") == "batch" for why in stops)
            progress.waiting = [why for why in stops if why.get("reason") == "review"]
            budget_stops = [why for why in stops if why.get("reason") == "budget"]
            progress.stopped = budget_stops[0] if budget_stops else None
            progress.phase = (
                "interrupted" if interrupted else "review" if progress.waiting else "stopped" if budget_stops
                else "waiting for batch" if detached else "done"
            )
            # Over every lane, once all have stopped: no timing in it. A run without lanes that
            # finished has been settled by its graph's last step; an interrupted one is settled later.
            if progress.phase != "interrupted" and (total > 1 or progress.phase != "done"):
                await dedup.settle(ledger, run)
    except TimeoutError:
        if not deadline.expired():
            raise
        progress.phase = "interrupted"  # its calls still in flight abandoned (Stop)
    finally:
        stop.detach()
        await _let_go(ledger, held, owner, heartbeat)
    return progress


@contextlib.contextmanager
def _collector_for_hours() -> Iterator[None]:
    """Python's cyclic garbage collector, set for a process that advances lanes for hours.

    What is loaded by now (modules, schemas, the panel, the compiled graph) lives as long as the
    process: frozen, a full collection no longer walks it (without this, about 230,000 objects
    walked several times a second). A round's objects live across many small collections while its
    calls are in flight, so with the default threshold they were promoted and left to full
    collections; collected every YOUNG_COLLECTION allocations they die young. Measured on the
    simulated panel (8 lanes): the collector's share of the main thread went from 15% to 3%
    (`docs/scale.md`). Restored when the lanes stop."""
    threshold = gc.get_threshold()
    frozen_here = gc.get_freeze_count() == 0
    gc.collect()  # garbage frozen would outlive the lanes: weak registries (agents.batch) would still list it
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if frozen_here:
            gc.unfreeze()


async def _advance_here(graph: Debate, saver: Any, settings: Settings, ledger: Ledger, run: str, lanes: list[Lane],
                        share: float | None, progress: Progress,
                        on_update: Callable[[Progress], None] | None, stop: Stop) -> list[dict[str, Any]]:
    """Every lane in this process at once; the first to fail stops the others. Returns why lanes paused."""
    try:
        with _collector_for_hours():
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_advance(graph, saver, settings, ledger, lane, share, progress, on_update, stop))
                    for lane in lanes
                ]
    except* RunFailed as failed:
        # The failed lane is marked so; the run's status (and the lane it names) reads from its lanes'.
        raise RunFailed(await _why_failed(ledger, run, failed.exceptions[0])) from failed.exceptions[0]
    return [stop for stop in (task.result() for task in tasks) if stop is not None]


async def _why_failed(ledger: Ledger, run: str, error: BaseException) -> str:
    """The failed run's one-line reason as every view shows it (a lane's names the lane)."""
    try:
        record = await ledger.run(run)
    except DatabaseUnavailable:  # the database is why: nothing more to read there
        return str(error)
    return record["reason"] if record is not None and record["reason"] else str(error)


async def advance_lane(settings: Settings, lane: str, budget: float | None, stop: Stop | None = None) -> dict[str, Any] | None:
    """Advance one lane from wherever it stands, in this process, under a lease of its own.

    What a cluster worker runs; a lane Ray starts again after its worker died resumes from its last
    checkpoint. A lease left by a holder on another machine is waited out (it expires unless renewed).
    Returns why the lane paused (its budget, a review, `stop`), or None once it is done.
    """
    stop = stop or Stop()
    res = await resources(settings)
    ledger = res.ledger
    owner = lease_owner()
    waited = 0.0
    heartbeat: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(None) as deadline:  # what a stop's grace (or a second ask) cuts short
            stop.attach(res.in_flight, deadline)
            record = await ledger.run(lane)
            if record is not None and record["status"] == "done":  # its worker died as it finished
                return None
            while True:
                try:
                    if await ledger.acquire_lease(lane, owner):
                        await lifecycle.resumed(ledger, lane)
                    break
                except LeaseError:
                    if waited > LEASE_SECONDS:
                        raise
                    await asyncio.sleep(2.0)
                    waited += 2.0
            heartbeat = asyncio.create_task(_heartbeat(ledger, [lane], owner))
            async with open_checkpointer(engine=ledger.engine, thin_rounds=True) as saver:
                graph = build_graph().compile(checkpointer=saver)
                [resumable] = await _to_resume(graph, ledger, lane)
                with _collector_for_hours():
                    return await _advance(graph, saver, settings, ledger, resumable, budget, Progress(run=lane), None, stop)
    except TimeoutError:
        if not deadline.expired():
            raise
        return {"reason": "interrupted"}  # its calls still in flight abandoned (Stop)
    finally:
        stop.detach()
        await _let_go(ledger, [lane], owner, heartbeat)
