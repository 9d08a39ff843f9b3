"""A run's lifecycle: the one module that writes a run's status.

    running ──► stopped (at its budget) ──► running          (cads resume --budget)
       │    ──► waiting for review ───────► running          (cads review, Studio)
       │    ──► waiting for batch ────────► running          (cads resume: its batch jobs are collected)
       ├──────► done                                         (its last round, or its target)
       └──────► failed, with a one-line reason ──► running   (cads resume)

    done at once                                             (cads check: a run that only holds its requests)

`running` with its holder gone reads as `interrupted` (store.runs.shown_status). A run with
lanes has no status of its own: the ledger reads it from its lanes' (store.runs.lanes_status),
so the graph, the runner and the Ray driver each write only the status of the lane they advance,
and only through these functions.
"""

from __future__ import annotations

from typing import Any

from cadsynth.agents.batch import BatchDetached
from cadsynth.agents.calls import ModelCallError
from cadsynth.store.ledger import WAITING_FOR_BATCH, WAITING_FOR_REVIEW, Ledger
from cadsynth.store.patience import DatabaseUnavailable


def failure_reason(exc: BaseException) -> str:
    """Why a run failed, in one line."""
    if isinstance(exc, ModelCallError | DatabaseUnavailable):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


async def begin(
    ledger: Ledger, run: str, config: dict[str, Any], seed: int, *, parent: str | None = None,
    fork_round: int | None = None, lane_of: str | None = None, lane: int | None = None,
) -> None:
    """A new run (a lane, a fork) in the ledger, running."""
    await ledger.start_run(run, config, seed, parent=parent, fork_round=fork_round, lane_of=lane_of, lane=lane)


async def begin_check(ledger: Ledger, run: str, config: dict[str, Any], seed: int) -> None:
    """`cads check`'s run, done from the start: it holds the check's requests (recorded and priced
    like any run's) and has no debate, so `cads resume` must never start one from it."""
    await ledger.start_run(run, config, seed, status="done")


async def resumed(ledger: Ledger, run: str) -> None:
    """Advanced again (after a failure, a stop, a kill or a review): running, its reason cleared.
    A run that is done stays done."""
    record = await ledger.run(run, derive=False)
    if record is not None and record["status"] != "done":
        await ledger.set_status(run, "running")


async def failed(ledger: Ledger, run: str, why: BaseException | str) -> None:
    """Failed, with its one-line reason (kept unless it already failed with one: the first cause).

    A run that failed because its database stayed away cannot say so there: it reads as
    interrupted (its holder gone), and `cads resume` continues it alike. A run that stopped once
    its batch jobs were sent (`--detach`) has not failed: it waits for batch."""
    if isinstance(why, BatchDetached):
        await waiting_for_batch(ledger, run)
        return
    try:
        record = await ledger.run(run, derive=False)
        if record is None or record["status"] == "failed":
            return
        await ledger.set_status(run, "failed", why if isinstance(why, str) else failure_reason(why))
    except DatabaseUnavailable:
        if not isinstance(why, DatabaseUnavailable):
            raise


async def finished(ledger: Ledger, run: str, kept: int) -> None:
    """Done, unless the run kept nothing because its calls gave up: that has not succeeded."""
    faults = (await ledger.call_breakdown(run))["faults"] if not kept else {}
    gave_up = faults.get("abstained", 0) + faults.get("dropped", 0)
    if not gave_up:
        await ledger.set_status(run, "done")
        return
    kinds = ", ".join(f"{k} {n}" for k, n in faults.items() if k not in ("retried", "abstained", "dropped") and n)
    await ledger.set_status(
        run, "failed", f"kept no samples: {gave_up} model calls gave up after their retries ({kinds}); see `cads stats {run}`"
    )


async def stopped_at_budget(ledger: Ledger, run: str) -> None:
    await ledger.set_status(run, "stopped")


async def waiting_for_review(ledger: Ledger, run: str) -> None:
    await ledger.set_status(run, WAITING_FOR_REVIEW)


async def waiting_for_batch(ledger: Ledger, run: str) -> None:
    await ledger.set_status(run, WAITING_FOR_BATCH)
