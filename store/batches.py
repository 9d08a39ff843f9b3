"""Provider batch jobs: each job cadsynth sends, the requests in it, and their answers once collected.

The batch desk (agents.batch) writes a job here with its requests *before* it sends it, and its
provider id as soon as the provider names one; it polls, and stores every answer of a finished job
in one transaction. So a process killed at any moment leaves what the next one needs: a job that
was sent is collected, not sent again, and an answer collected is read from here, not paid again.
Readers: `cads runs/show/stats` (the jobs a run waits on, and their counts).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.migrate import SetUpOnce
from cadsynth.store.patience import patient
from cadsynth.store.upsert import insert_new, upsert

# A job in one of these states may still answer: the desk polls it (or, preparing, looks for it).
OPEN_STATES = ("preparing", "submitted", "validating", "in_progress", "finalizing")
READ_BATCH = 500  # keys per lookup query: under every backend's bound-parameter limit


class BatchStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._set_up = SetUpOnce(engine)

    @whole
    async def _init(self) -> None:
        await self._set_up()

    @whole
    async def add_job(self, job: dict[str, Any], requests: Iterable[tuple[str, str]]) -> None:
        """A job about to be sent, with its requests (run, key): stored before the provider sees it."""
        await self._init()
        now = time.time()
        row = {"state": "preparing", "done": 0, "reason": None, "provider_id": None, **job, "created_at": now, "updated_at": now}
        async with self.engine.begin() as conn:
            await conn.execute(insert_new(conn.dialect.name, t.batch_jobs), [row])
            await conn.execute(
                upsert(conn.dialect.name, t.batch_requests),
                [{"run": run, "key": key, "job": job["id"], "state": "waiting", "status": None, "response": None, "reason": None}
                 for run, key in requests],
            )

    @whole
    async def set_job(self, job: str, **values: Any) -> None:
        """A job's provider id, state, progress or reason, as the provider last told them."""
        await self._init()
        async with self.engine.begin() as conn:
            await conn.execute(update(t.batch_jobs).where(t.batch_jobs.c.id == job).values(**values, updated_at=time.time()))

    @whole
    async def collect(self, job: str, state: str, answers: dict[tuple[str, str], dict[str, Any]], reason: str | None = None) -> None:
        """A finished job: every request's answer (state, status, response, reason) and the job's
        final state, in one transaction. Asked again after an outage, it writes the same."""
        await self._init()
        async with self.engine.begin() as conn:
            rows = [{"run": run, "key": key, "job": job, **answer} for (run, key), answer in answers.items()]
            if rows:
                await conn.execute(upsert(conn.dialect.name, t.batch_requests), rows)
            await conn.execute(
                update(t.batch_jobs).where(t.batch_jobs.c.id == job).values(state=state, reason=reason, updated_at=time.time())
            )

    @patient
    async def open_jobs(self, provider: str, endpoint: str, model: str) -> list[dict[str, Any]]:
        """The jobs to one endpoint and model that may still answer, each with its requests (run, key)."""
        await self._init()
        j, r = t.batch_jobs.c, t.batch_requests.c
        async with self.engine.connect() as conn:
            jobs = [
                dict(row._mapping)
                for row in await conn.execute(
                    select(t.batch_jobs).where(
                        j.provider == provider, j.endpoint == endpoint, j.model == model, j.state.in_(OPEN_STATES)
                    ).order_by(j.created_at)
                )
            ]
            for job in jobs:
                keys = await conn.execute(select(r.run, r.key).where(r.job == job["id"]))
                job["keys"] = [(run, key) for run, key in keys]
        return jobs

    @patient
    async def answers(self, run: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Of `keys` (requests of `run`), those a collected job answered: status and response each."""
        await self._init()
        r = t.batch_requests.c
        found: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(keys), READ_BATCH):
                rows = await conn.execute(
                    select(r.key, r.status, r.response).where(
                        r.run == run, r.key.in_(keys[start : start + READ_BATCH]), r.state == "answered"
                    )
                )
                found.update({key: {"status": status, "response": response} for key, status, response in rows})
        return found

    @patient
    async def waiting_jobs(self, runs: list[str]) -> list[dict[str, Any]]:
        """The open jobs holding requests of `runs` (a run and its lanes): what `cads runs/show` list."""
        await self._init()
        j, r = t.batch_jobs.c, t.batch_requests.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(j.id, j.provider_id, j.provider, j.model, j.state, j.requests, j.done, j.created_at)
                .where(j.state.in_(OPEN_STATES), j.id.in_(select(r.job).where(r.run.in_(runs)).distinct()))
                .order_by(j.created_at)
            )
            return [dict(row._mapping) for row in rows]

    @patient
    async def totals(self, runs: list[str]) -> dict[str, int]:
        """Jobs that held requests of `runs`, those that failed whole, and their requests by end."""
        await self._init()
        j, r = t.batch_jobs.c, t.batch_requests.c
        async with self.engine.connect() as conn:
            mine = select(r.job).where(r.run.in_(runs)).distinct()
            by_state = dict(
                (state, int(n))
                for state, n in await conn.execute(select(j.state, func.count()).where(j.id.in_(mine)).group_by(j.state))
            )
            lost = (await conn.execute(select(func.count()).where(and_(r.run.in_(runs), r.state == "lost")))).scalar()
            answered = (await conn.execute(select(func.count()).where(and_(r.run.in_(runs), r.state == "answered")))).scalar()
            errored = (await conn.execute(select(func.count()).where(and_(r.run.in_(runs), r.state == "errored")))).scalar()
        return {
            "jobs": sum(by_state.values()),
            "jobs_failed": by_state.get("failed", 0),
            "jobs_open": sum(n for s, n in by_state.items() if s in OPEN_STATES),
            "requests_answered": int(answered or 0),
            "requests_errored": int(errored or 0),
            "requests_lost": int(lost or 0),
        }
