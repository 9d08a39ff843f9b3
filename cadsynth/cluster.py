"""Lanes on a Ray cluster: each lane a Ray task in a worker process, every worker on one PostgreSQL.

The driver (`cads run --ray`) starts the run as usual (ledger rows, the run's lease), then hands
each unfinished lane to Ray as a task that advances it (`runner.advance_lane`) under a lease of
its own. What ties the workers together is the store: checkpoints, ledger and call cache in one
PostgreSQL database, images in one folder every worker and `cads export` can read. The driver
shows progress by reading the ledger.

* Limits: each limited endpoint gets one actor holding an `agents.limits.PermitDesk`; every
  worker's limiter asks it for a permit before a request, so rpm, tpm and concurrency hold for the
  whole cluster. The actors belong to the driver and go with it.
* Faults: a worker that dies mid-lane is a system failure, which Ray retries (`ray.retries`); the
  lane resumes from its last checkpoint, so only the calls in flight are made again. A lane that
  fails on its own (an unreachable endpoint...) is not retried: it is marked failed, the other lanes
  are stopped, and the run fails with that lane's one-line reason; `cads resume RUN` continues it.
* A stop (`runner.Stop`, the driver's signal) goes on to every lane as Ray's cancel, which a running
  task receives as SIGINT: each lane stops the way a run in one process does, with the same grace,
  and returns what its calls in flight came to. Asked again, the lanes stop at once. A lane not
  started yet is simply not started.

Ray is imported here only, on first use: the CLI starts without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from cadsynth import lifecycle
from cadsynth.config import RayConfig, RunConfig

if TYPE_CHECKING:
    from cadsynth.graphs.settings import Settings
    from cadsynth.runner import LaneRunner, Progress, Stop

EndpointKey = tuple[str, str, "str | None"]
# How often the driver reads the ledger for its progress display (and passes a stop on).
POLL_SECONDS = 0.5
# How much longer than a stop's grace the driver waits for its lanes to return from theirs, before
# it ends their workers.
RETURN_SECONDS = 15.0


class ClusterError(RuntimeError):
    """The cluster cannot be reached or used; one line for the user."""


def lanes_on_ray(ray: RayConfig) -> LaneRunner:
    """The `lanes_on` of `runner.execute` that runs a run's lanes on the cluster `ray` names."""
    return partial(_run_lanes, ray)


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (or start one on this machine); True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        _answers(address)
    # Workers connect to the database with the driver's pool bound and patience; keys stay in their own environment.
    env = {k: os.environ[k] for k in ("CADS_DB_POOL", "CADS_DB_PATIENCE") if k in os.environ}
    options: dict[str, Any] = {
        "logging_level": logging.WARNING,
        "log_to_driver": False,  # the driver's terminal is the live progress display
        "runtime_env": {"env_vars": env} if env else None,
    }
    try:
        if address is None:
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local cluster" if address is None else f"the Ray cluster at {address!r}"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        hint = "; is `ray start --head` running there?" if address else ""
        raise ClusterError(f"cannot start or join {where} ({first}){hint}") from None
    return True


def _answers(address: str) -> None:
    """Something listens at HOST:PORT: Ray itself would retry a dead address for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ClusterError(
            f"nothing answers at {address!r} ({exc.strerror or exc}); start the head with `ray start --head` "
            "and give the address it prints, or auto on its machine"
        ) from None


def _lane_task(
    settings: Settings, lane: str, budget: float | None, desks: dict[EndpointKey, Any], grace: float
) -> dict[str, Any] | None:
    """In a Ray worker: advance one lane, asking the run's desks for permits."""
    import ray

    from cadsynth.agents import limits

    attempt = f"{lane}@{uuid.uuid4().hex[:8]}"
    # A lane started again after its worker died first returns what that worker held.
    ray.get([desk.forget.remote(lane, attempt) for desk in desks.values()])
    limits.share_limits({key: _RayDesk(desk) for key, desk in desks.items()}, attempt)
    try:
        return asyncio.run(_advance_until_stopped(settings, lane, budget, grace))
    finally:
        limits.share_limits({}, "")


async def _advance_until_stopped(settings: Settings, lane: str, budget: float | None, grace: float) -> dict[str, Any] | None:
    """The lane, stopped by the driver's cancel (SIGINT here) as a run in one process is by a signal;
    a stopped lane returns what its calls in flight came to."""
    from cadsynth.runner import Stop, advance_lane

    stop = Stop(grace)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.ask, signal.SIGINT)
    why = await advance_lane(settings, lane, budget, stop)
    if why is not None and why.get("reason") == "interrupted":
        return {**why, "in_flight": stop.in_flight, "abandoned": stop.abandoned}
    return why


class _RayDesk:
    """A worker's view of a desk actor (`agents.limits.Desk`): asks await, settling and returning do not."""

    def __init__(self, actor: Any):
        self.actor = actor

    def acquire(self, holder: str, tokens: int, kind: str) -> Awaitable[str | None]:
        return self.actor.acquire.remote(holder, tokens, kind)  # type: ignore[no-any-return]

    def settle(self, permit: str, tokens: int) -> None:
        self.actor.settle.remote(permit, tokens)

    def release(self, permit: Any, fault: str | None = None, retry_after: float | None = None) -> None:
        # An ObjectRef (an acquire whose caller gave up) is resolved by Ray before the call runs.
        self.actor.release.remote(permit, fault, retry_after)


def _desks(config: RunConfig) -> dict[EndpointKey, Any]:
    """One desk actor per limited endpoint of the panel (keyed like `agents.limits.limiter_for`)."""
    import ray

    from cadsynth.agents.limits import PermitDesk

    # No CPU of its own: a desk only waits, and must not keep a lane from a slot.
    actor = ray.remote(PermitDesk).options(num_cpus=0, max_concurrency=1000)
    desks: dict[EndpointKey, Any] = {}
    for agent in config.panel:
        limit = config.limit(agent)
        key = (agent.provider, agent.model, agent.base_url)
        if limit is not None and key not in desks:
            desks[key] = actor.remote(limit)
    return desks


def _reason(exc: BaseException, retries: int) -> str:
    """One line for a lane that failed on the cluster."""
    import ray.exceptions as rex

    from cadsynth.lifecycle import failure_reason as one_line
    from cadsynth.runner import RunFailed

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        return str(cause) if isinstance(cause, RunFailed) else one_line(cause)
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.OwnerDiedError)):
        return f"its worker died {retries + 1} time{'s' * (retries > 0)} (ray.retries: {retries}); see the Ray logs of that node"
    return one_line(exc)


async def _run_lanes(
    ray_config: RayConfig,
    settings: Settings,
    run: str,
    lanes: list[str],
    budget: float | None,
    progress: Progress,
    on_update: Callable[[Progress], None] | None,
    stop: Stop,
) -> list[dict[str, Any]]:
    import ray
    from ray.exceptions import TaskCancelledError

    from cadsynth.agents.limits import endpoint_label
    from cadsynth.graphs.settings import resources
    from cadsynth.runner import RunFailed, refresh

    ledger = (await resources(settings)).ledger
    record = await ledger.run(run)
    if record is None:
        raise LookupError(f"no run {run!r} in the ledger")
    config = RunConfig.model_validate(record["config"])
    started = connect(ray_config.address)
    desks = _desks(config)
    task = ray.remote(_lane_task)
    refs = {
        lane: task.options(
            name=f"cads lane {lane}", num_cpus=ray_config.lane_cpus, max_retries=ray_config.retries, retry_exceptions=False
        ).remote(settings, lane, budget, desks, stop.grace)
        for lane in lanes
    }
    waiting = {asyncio.wrap_future(ref.future()): lane for lane, ref in refs.items()}
    stops: list[dict[str, Any]] = []
    told, give_up_at = 0, float("inf")  # how often the lanes were asked to stop; when the driver stops waiting
    try:
        progress.phase = f"{len(lanes)} lanes on Ray"
        while waiting and time.monotonic() < give_up_at:
            done, _ = await asyncio.wait(waiting, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if stop.asked > told:
                # Not recursive: the permits a lane waits for at its desks are its own to give back.
                for lane in waiting.values():
                    ray.cancel(refs[lane], force=False, recursive=False)
                told = stop.asked
                give_up_at = min(give_up_at, time.monotonic() + stop.grace + RETURN_SECONDS)
            for key, desk in desks.items():  # an adaptive concurrency lives in its desk
                now = await asyncio.wrap_future(desk.concurrency.remote().future())
                if now is not None:
                    progress.concurrency[endpoint_label(key)] = now
            await refresh(ledger, run, progress)
            if on_update:
                on_update(progress)
            for future in done:
                lane = waiting.pop(future)
                if isinstance(future.exception(), TaskCancelledError):  # stopped before it could start
                    stops.append({"reason": "interrupted"})
                    continue
                if future.exception() is None:
                    why = future.result()
                    if why is not None:
                        stop.in_flight += why.pop("in_flight", 0)
                        stop.abandoned += why.pop("abandoned", 0)
                        stops.append(why)
                    continue
                reason = _reason(future.exception(), ray_config.retries)  # type: ignore[arg-type]
                await lifecycle.failed(ledger, lane, reason)  # the run's status reads from its lanes'
                record = await ledger.run(run)
                raise RunFailed(record["reason"] if record is not None and record["reason"] else reason)
        await refresh(ledger, run, progress)  # the final figures, not the last poll's
        if waiting:  # lanes that did not return from their stop in time: their workers are ended below
            stops.append({"reason": "interrupted"})
        return stops
    finally:
        for future, lane in waiting.items():
            # The other lanes stop where they are (each resumable): their workers go at once.
            ray.cancel(refs[lane], force=True)
            future.cancel()
        for desk in desks.values():
            ray.kill(desk)
        if started:
            ray.shutdown()
