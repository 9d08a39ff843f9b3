"""The run registry: a run's row (status, config, seed, budget, its parent if a fork, its lanes) and
the lease that says which process advances it.

Every record belongs to a run: its proposals, critiques and the rest are kept by store.records.
Only cadsynth.lifecycle starts a run and sets its status; readers (`cads runs/show/stats`) see the
status through `shown_status`, and a run with lanes reads its status from its lanes'.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.patience import patient
from cadsynth.store.ledger_base import LedgerBase

# A lease not renewed for this long frees the run: how long a holder on another machine that died
# keeps it (one on this machine frees it at once).
LEASE_SECONDS = 60.0


class LeaseError(RuntimeError):
    pass


class UnknownRunError(LookupError):
    """No run of that id in this database."""


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (killed, crashed) cannot advance the run."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


WAITING_FOR_REVIEW = "review"  # the stored status of a run paused for a person's decisions (`review: true`)
WAITING_FOR_BATCH = "batch"  # ... of a run stopped with its calls in provider batch jobs (`--detach`)


def shown_status(record: dict[str, Any]) -> str:
    """The status a person should see: a `running` run whose holder is gone is `interrupted`.

    A run's process can die without a word (a kill, a crash, a closed terminal); its lease says so.
    """
    if record["status"] == WAITING_FOR_REVIEW:
        return "waiting for review"
    if record["status"] == WAITING_FOR_BATCH:
        return "waiting for batch"
    if record["status"] != "running":
        return str(record["status"])
    holder, until = record.get("lease_owner"), record.get("lease_until")
    if holder is None or _holder_is_dead(holder) or (until is not None and until < time.time()):
        return "interrupted"
    return "running"


def lanes_status(lanes: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The status of a run with lanes, read from theirs: failed if one failed (with its reason),
    else waiting for review, else running, else waiting for batch, else stopped at its budget
    while any is, else done."""
    for lane in lanes:
        if lane["status"] == "failed":
            return "failed", f"lane {lane['id']}: {lane['reason']}"
    statuses = {lane["status"] for lane in lanes}
    for status in (WAITING_FOR_REVIEW, "running", WAITING_FOR_BATCH, "stopped"):
        if status in statuses:
            return status, None
    return "done", None


class RunRegistry(LedgerBase):
    """The runs of one database: started, leased, their status set and read."""

    @whole
    async def start_run(
        self,
        run: str,
        config: dict[str, Any],
        seed: int,
        parent: str | None = None,
        fork_round: int | None = None,
        *,
        lane_of: str | None = None,
        lane: int | None = None,
        status: str = "running",
    ) -> None:
        await self.init()
        async with self.engine.begin() as conn:
            exists = (await conn.execute(select(t.runs.c.id).where(t.runs.c.id == run))).first()
            if exists:
                await conn.execute(
                    update(t.runs).where(t.runs.c.id == run).values(status=status, reason=None, updated_at=func.now())
                )
            else:
                await conn.execute(
                    t.runs.insert().values(
                        id=run, status=status, config=config, seed=seed, parent=parent, fork_round=fork_round,
                        lane_of=lane_of, lane=lane,
                    )
                )

    @whole
    async def set_budget(self, run: str, budget: float | None) -> None:
        await self.init()
        async with self.engine.begin() as conn:
            await conn.execute(update(t.runs).where(t.runs.c.id == run).values(budget_usd=budget, updated_at=func.now()))

    @whole
    async def set_status(self, run: str, status: str, reason: str | None = None) -> None:
        """`reason` says in one line why a run failed; any other status clears it."""
        await self.init()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.runs).where(t.runs.c.id == run).values(status=status, reason=reason, updated_at=func.now())
            )

    @whole
    async def acquire_lease(self, run: str, owner: str, seconds: float = LEASE_SECONDS) -> bool:
        """Take (or renew) the run for this process; refuse if another live process holds it.
        True when this process took it (rather than renewed it): the run is advanced again.

        A lease expires unless renewed, so a holder on another machine that died frees the run
        after `seconds`; a dead holder on this machine frees it at once.
        """
        await self.init()
        now = time.time()
        runs = t.runs.c
        async with self.engine.begin() as conn:
            holder = (await conn.execute(select(runs.lease_owner).where(runs.id == run))).first()
            if holder is None:
                raise LeaseError(f"run {run!r} does not exist; start it with `cads run`")
            free = (runs.lease_owner.is_(None)) | (runs.lease_owner == owner) | (runs.lease_until < now)
            if holder[0] is not None and _holder_is_dead(holder[0]):
                free = free | (runs.lease_owner == holder[0])
            taken = await conn.execute(
                update(t.runs).where(and_(runs.id == run, free)).values(lease_owner=owner, lease_until=now + seconds)
            )
            if taken.rowcount == 0:
                raise LeaseError(
                    f"run {run!r} is being advanced by another process ({holder[0]}); wait for it to finish or stop it first"
                )
        return holder[0] != owner

    @whole
    async def claim(self, run: str, owner: str) -> bool:
        """Mark the run as advanced by this process when no live process holds it, with no expiry
        (True when it did).

        For runs driven without the CLI's lease (LangGraph Studio): they then show as running
        while their process lives, and as interrupted once it is gone.
        """
        await self.init()
        runs = t.runs.c
        async with self.engine.begin() as conn:
            holder = (await conn.execute(select(runs.lease_owner).where(runs.id == run))).scalar()
            if holder is None or (holder != owner and _holder_is_dead(holder)):
                taken = await conn.execute(
                    update(t.runs)
                    .where(and_(runs.id == run, or_(runs.lease_owner.is_(None), runs.lease_owner == holder)))
                    .values(lease_owner=owner, lease_until=None)
                )
                return bool(taken.rowcount)
        return False

    @whole
    async def release_lease(self, run: str, owner: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.runs)
                .where(and_(t.runs.c.id == run, t.runs.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)
            )

    @patient
    async def runs(self) -> list[dict[str, Any]]:
        """Every run (a lane is listed with its run, not on its own)."""
        await self.init()
        if self._empty:
            return []
        async with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in await conn.execute(select(t.runs).order_by(t.runs.c.created_at, t.runs.c.id))]
        lanes: dict[str, list[dict[str, Any]]] = {}
        for row in sorted((r for r in rows if r["lane_of"] is not None), key=lambda r: r["lane"]):
            lanes.setdefault(row["lane_of"], []).append(row)
        return [self._derived(row, lanes.get(row["id"], [])) for row in rows if row["lane_of"] is None]

    @staticmethod
    def _derived(record: dict[str, Any], lanes: list[dict[str, Any]]) -> dict[str, Any]:
        """A run as it reads: one with lanes takes its status (and reason) from theirs."""
        if not lanes:
            return record
        status, reason = lanes_status(lanes)
        return {**record, "status": status, "reason": reason}

    @patient
    async def lanes(self, run: str) -> list[dict[str, Any]]:
        """The lanes of a run, in order; none for a run without lanes."""
        await self.init()
        if self._empty:
            return []
        async with self.engine.connect() as conn:
            query = select(t.runs).where(t.runs.c.lane_of == run).order_by(t.runs.c.lane)
            return [dict(row._mapping) for row in await conn.execute(query)]

    @patient
    async def run(self, run: str, *, derive: bool = True) -> dict[str, Any] | None:
        """The run's row; with `derive`, a run with lanes reads its status from theirs (what every
        reader shows). `derive=False` is the row as stored (cadsynth.lifecycle's own reads)."""
        await self.init()
        if self._empty:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.runs).where(t.runs.c.id == run))).first()
        if row is None:
            return None
        record = dict(row._mapping)
        if derive and record["lane_of"] is None and (record["config"] or {}).get("lanes", 1) > 1:
            record = self._derived(record, await self.lanes(run))
        return record

    @patient
    async def lane_progress(self, run: str) -> list[dict[str, Any]]:
        """Each lane's (or the run's own) status, furthest round and outcomes so far: two grouped
        queries, cheap enough for a live display to ask a few times a second. It counts from the
        records' tables (store.records) because progress is how far the records have got."""
        members = await self.lanes(run) or [r for r in [await self.run(run)] if r is not None]
        ids = [m["id"] for m in members]
        async with self.engine.connect() as conn:
            rounds = dict(
                (await conn.execute(
                    select(t.contexts.c.run, func.max(t.contexts.c.round)).where(t.contexts.c.run.in_(ids)).group_by(t.contexts.c.run)
                )).all()
            )
            outcomes = (await conn.execute(
                select(t.consensus.c.run, t.consensus.c.outcome, func.count())
                .where(t.consensus.c.run.in_(ids))
                .group_by(t.consensus.c.run, t.consensus.c.outcome)
            )).all()
        return [
            {
                "run": m["id"],
                "status": shown_status(m),
                "round": rounds.get(m["id"], 0),
                "outcomes": {outcome: int(n) for lane, outcome, n in outcomes if lane == m["id"]},
            }
            for m in members
        ]

    @patient
    async def forks(self, run: str) -> list[str]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(t.runs.c.id).where(t.runs.c.parent == run).order_by(t.runs.c.id))
            return [r[0] for r in result]
