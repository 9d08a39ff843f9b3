"""The records of every run: its proposals, critiques, judgments, consensus, contexts and round
summaries, every model call with its tokens, cost and fault, the near-duplicate gate's fingerprints
and removals, and a person's review decisions.

Writes are idempotent upserts keyed by the deterministic ids (through store.upsert), so a step that
runs twice (after a crash) leaves exactly one row. A fork reads its parent's records before the
round it forked at as its own (its lineage). The runs themselves are kept by store.runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, case, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cadsynth.store import schema as t
from cadsynth.store.db import whole
from cadsynth.store.patience import patient
from cadsynth.store.ledger_base import LedgerBase
from cadsynth.store.upsert import insert_new, upsert

if TYPE_CHECKING:
    from cadsynth.domain import Consensus, Context, Critique, Judgment, Proposal, RoundSummary


@dataclass(frozen=True)
class CallRecord:
    run: str
    round: int
    agent: str
    role: str
    target: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    fault: str | None = None  # rate_limited | server_error | timeout | malformed
    outcome: str | None = None  # after a fault: retried | abstained | dropped
    attempt: int = 0  # the request's place among the call's retries
    detail: str | None = None  # why a malformed answer was refused (agents.faults.why)
    batch: bool = False  # sent in a provider batch job (agents.batch), at its price
    online_cost_usd: float | None = None  # a batched request's cost at the online price


@dataclass(frozen=True)
class Fingerprint:
    """What the near-duplicate gate compares of a judged problem: no image bytes, only hashes."""

    proposal: str
    run: str
    round: int
    image_hash: str  # perceptual hash, hex
    question_minhash: list[int]


@dataclass(frozen=True, slots=True)
class Fingerprinted:
    """A fingerprinted problem as the near-duplicate pass reads it: its place in the pass's order,
    its outcome, its image hash and its question, and nothing else of its records."""

    proposal: str
    round: int
    proposer: str
    index: int
    outcome: str | None  # None while its consensus is not recorded
    image_hash: str
    question: str


@dataclass(frozen=True)
class Duplicate:
    """A sample the run-wide pass removed, and the earlier sample it duplicates."""

    proposal: str
    duplicate_of: str
    image_distance: int
    question_similarity: float



def _row(table: Table, record: Any) -> dict[str, Any]:
    """A record as its table's row: the key columns (ids within the run), and the JSON of every other field."""
    keys = t.RECORD_COLUMNS[table.name]
    row = {name: getattr(record, name) for name in keys}
    prefix = f"{record.run}/"
    for name in t.RUN_RELATIVE:
        if name in row:
            if not row[name].startswith(prefix):
                raise ValueError(f"{name} {row[name]!r} of a {table.name} row is not an id of its run {record.run!r}")
            row[name] = row[name][len(prefix):]
    return row | {"record": record.model_dump(mode="json", exclude=set(keys))}


def _record(keys: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A row read back as its record: the JSON, the key columns, and the whole ids (the run's id first)."""
    record: dict[str, Any] = row[0] | dict(zip(keys, row[1:], strict=True))
    for name in t.RUN_RELATIVE:
        if name in record:
            record[name] = f"{record['run']}/{record[name]}"
    return record


def _upsert(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
    return conn.execute(upsert(conn.dialect.name, table), rows)


class Records(LedgerBase):
    """What every run produced and what it cost, written idempotently and read through forks."""

    @whole
    async def _put(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        await self.init()
        async with self.engine.begin() as conn:
            await _upsert(conn, table, rows)

    @whole
    async def write(
        self,
        *,
        proposals: Iterable[Proposal] = (),
        critiques: Iterable[Critique] = (),
        judgments: Iterable[Judgment] = (),
        consensus: Iterable[Consensus] = (),
        calls: Iterable[CallRecord] = (),
    ) -> None:
        """What one task produced and the requests it took, in one transaction."""
        batches = [(table, [_row(table, r) for r in records])
                   for table, records in ((t.proposals, proposals), (t.critiques, critiques),
                                          (t.judgments, judgments), (t.consensus, consensus))]
        requests = [vars(c) for c in calls]
        if not requests and not any(rows for _, rows in batches):
            return
        await self.init()
        async with self.engine.begin() as conn:
            for table, rows in batches:
                if rows:
                    await _upsert(conn, table, rows)
            if requests:
                # a request recorded already (its call re-run after a crash) is skipped
                await conn.execute(insert_new(conn.dialect.name, t.calls), requests)

    async def put_proposals(self, items: Iterable[Proposal]) -> None:
        await self.write(proposals=items)

    async def put_judgments(self, items: Iterable[Judgment]) -> None:
        await self.write(judgments=items)

    async def put_consensus(self, items: Iterable[Consensus]) -> None:
        await self.write(consensus=items)

    # --- `concurrency: auto`: each endpoint's value over the run ----------------------------------

    async def put_concurrency(self, run: str, samples: Iterable[tuple[str, float, int, int]]) -> None:
        """(endpoint, time, value, in flight) samples of the run's adaptive concurrencies."""
        await self._put(t.concurrency, [
            {"run": run, "endpoint": e, "at": at, "value": v, "in_flight": n} for e, at, v, n in samples
        ])

    @patient
    async def concurrency(self, run: str) -> dict[str, list[tuple[float, int, int]]]:
        """The run's samples per endpoint, in time order: (time, value, in flight)."""
        await self.init()
        if self._empty:
            return {}
        c = t.concurrency.c
        query = select(c.endpoint, c.at, c.value, c.in_flight).where(c.run == run).order_by(c.endpoint, c.at)
        found: dict[str, list[tuple[float, int, int]]] = {}
        async with self.engine.connect() as conn:
            for endpoint, at, value, in_flight in await conn.execute(query):
                found.setdefault(endpoint, []).append((at, value, in_flight))
        return found

    # --- the near-duplicate gate (graphs.dedup decides; this keeps what it found) ---------------

    async def put_fingerprints(self, rows: Iterable[Fingerprint]) -> None:
        await self._put(t.fingerprints, [vars(f) for f in rows])

    @patient
    async def fingerprints(self, run: str) -> list[Fingerprint]:
        """The run's fingerprints (a fork's include its parent's before the fork)."""
        await self.init()
        f = t.fingerprints.c
        query = select(f.proposal, f.run, f.round, f.image_hash, f.question_minhash).where(
            await self._where_lineage(t.fingerprints, run)
        )
        async with self.engine.connect() as conn:
            return [Fingerprint(*row) for row in await conn.execute(query)]

    @patient
    async def fingerprinted_problems(self, run: str) -> list[Fingerprinted]:
        """The run's fingerprinted problems (a fork's include its parent's before the fork), read
        column by column: the pass over a large run needs a few fields of each problem, never its
        records whole (a 100,000-sample run's proposals would fill a small process's memory)."""
        await self.init()
        f, p, c = t.fingerprints.c, t.proposals.c, t.consensus.c
        hashes = select(f.proposal, f.image_hash).where(await self._where_lineage(t.fingerprints, run))
        outcomes = select(c.run, c.proposal, c.outcome).where(await self._where_lineage(t.consensus, run))
        problems = select(
            p.run, p.id, p.round, p.proposer, p.record["index"].as_integer(), p.record["question"].as_string()
        ).where(await self._where_lineage(t.proposals, run))
        async with self.engine.connect() as conn:
            hashed = {proposal: image_hash for proposal, image_hash in await conn.execute(hashes)}
            decided = {f"{r}/{proposal}": outcome for r, proposal, outcome in await conn.execute(outcomes)}
            found = []
            for r, id_, round_, proposer, index, question in await conn.execute(problems):
                proposal = f"{r}/{id_}"  # ids are kept within their run (schema.RUN_RELATIVE)
                if proposal in hashed:
                    found.append(Fingerprinted(proposal, round_, proposer, index, decided.get(proposal), hashed[proposal], question))
        return found

    @patient
    async def fingerprinted(self, run: str) -> int:
        await self.init()
        query = select(func.count()).select_from(t.fingerprints).where(await self._where_lineage(t.fingerprints, run))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    @whole
    async def put_duplicates(self, run: str, rows: Iterable[Duplicate]) -> None:
        """The run's removals as a whole pass found them: earlier passes' rows go."""
        await self.init()
        found = [{"run": run, **vars(d)} for d in rows]
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.duplicates).where(t.duplicates.c.run == run))
            if found:
                await conn.execute(t.duplicates.insert(), found)

    @patient
    async def duplicates(self, run: str) -> list[Duplicate]:
        await self.init()
        if self._empty:
            return []
        d = t.duplicates.c
        query = select(d.proposal, d.duplicate_of, d.image_distance, d.question_similarity).where(d.run == run)
        async with self.engine.connect() as conn:
            return [Duplicate(*row) for row in await conn.execute(query.order_by(d.proposal))]

    async def put_context(self, run: str, round_: int, context: Context) -> None:
        await self._put(
            t.contexts,
            [{"run": run, "version": context.version, "round": round_, "record": context.model_dump(mode="json")}],
        )

    async def put_reviews(self, rows: list[dict[str, Any]]) -> None:
        """A person's decisions on a round (rows of `cads_reviews`); recorded again, they stay one row each."""
        await self._put(t.reviews, rows)

    @patient
    async def reviews(self, run: str) -> list[dict[str, Any]]:
        await self.init()
        if self._empty:
            return []
        async with self.engine.connect() as conn:
            query = select(t.reviews).where(t.reviews.c.run == run).order_by(t.reviews.c.round, t.reviews.c.proposal)
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def put_round(self, summary: RoundSummary) -> None:
        await self._put(
            t.rounds, [{"run": summary.run, "round": summary.round, "summary": summary.model_dump(mode="json")}]
        )

    # --- reads ---------------------------------------------------------------------------------

    @patient
    async def _lineage(self, run: str) -> list[tuple[str, int | None]]:
        """A fork shares its parent's rounds before the fork: (run, rounds below) back to the root.

        Each run's row in the registry (store.runs) names its parent and the round it forked at."""
        lineage: list[tuple[str, int | None]] = [(run, None)]
        if self._empty:
            return lineage
        below: int | None = None
        runs = t.runs.c
        async with self.engine.connect() as conn:
            fork = (await conn.execute(select(runs.parent, runs.fork_round).where(runs.id == run))).first()
            while fork is not None and fork.parent is not None:
                below = fork.fork_round if below is None else min(below, fork.fork_round)
                lineage.append((fork.parent, below))
                fork = (await conn.execute(select(runs.parent, runs.fork_round).where(runs.id == fork.parent))).first()
        return lineage

    async def _where_lineage(self, table: Table, run: str, round_: int | None = None) -> Any:
        clauses = [
            and_(table.c.run == r, table.c.round < below) if below is not None else table.c.run == r
            for r, below in await self._lineage(run)
        ]
        condition = or_(*clauses)
        return and_(condition, table.c.round == round_) if round_ is not None else condition

    @patient
    async def _records(self, table: Table, run: str, round_: int | None = None) -> list[dict[str, Any]]:
        """The table's records, whole again: the JSON with the columns it leaves out."""
        await self.init()
        keys = t.RECORD_COLUMNS[table.name]
        query = select(table.c.record, *(table.c[name] for name in keys)).where(await self._where_lineage(table, run, round_))
        async with self.engine.connect() as conn:
            return [_record(keys, row) for row in await conn.execute(query)]

    async def proposals(self, run: str, round_: int | None = None) -> list[Proposal]:
        from cadsynth.domain import Proposal  # the domain model loads with the first read, not with `cads runs`

        rows = [Proposal.model_validate(r) for r in await self._records(t.proposals, run, round_)]
        return sorted(rows, key=lambda p: (p.round, p.proposer, p.index))

    async def critiques(self, run: str, round_: int | None = None) -> list[Critique]:
        from cadsynth.domain import Critique

        return sorted((Critique.model_validate(r) for r in await self._records(t.critiques, run, round_)), key=lambda c: c.id)

    async def judgments(self, run: str, round_: int | None = None) -> list[Judgment]:
        from cadsynth.domain import Judgment

        return sorted((Judgment.model_validate(r) for r in await self._records(t.judgments, run, round_)), key=lambda j: j.id)

    async def consensus(self, run: str, round_: int | None = None) -> list[Consensus]:
        from cadsynth.domain import Consensus

        rows = [Consensus.model_validate(r) for r in await self._records(t.consensus, run, round_)]
        return sorted(rows, key=lambda c: (c.round, c.proposal))

    @patient
    async def context(self, run: str, round_: int) -> Context | None:
        """The context that steered `round_` (its newest version)."""
        await self.init()
        where = await self._where_lineage(t.contexts, run, round_)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(t.contexts.c.record).where(where).order_by(t.contexts.c.version.desc()).limit(1))
            ).first()
        from cadsynth.domain import Context

        return Context.model_validate(row[0]) if row else None

    @patient
    async def contexts(self, run: str) -> list[tuple[int, Context]]:
        await self.init()
        where = await self._where_lineage(t.contexts, run)
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(t.contexts.c.round, t.contexts.c.record).where(where).order_by(t.contexts.c.round, t.contexts.c.version)
            )
            from cadsynth.domain import Context

            return [(r[0], Context.model_validate(r[1])) for r in result]

    @patient
    async def rounds(self, run: str) -> list[RoundSummary]:
        await self.init()
        where = await self._where_lineage(t.rounds, run)
        async with self.engine.connect() as conn:
            result = await conn.execute(select(t.rounds.c.summary).where(where).order_by(t.rounds.c.round))
            from cadsynth.domain import RoundSummary

            return [RoundSummary.model_validate(r[0]) for r in result]

    # --- calls: tokens, cost and faults ------------------------------------------------------------

    @patient
    async def call_totals(self, run: str) -> dict[str, Any]:
        """Requests, tokens and cost; of the cost, what went in batch jobs, and what the same requests
        would have cost online (a batched request's online price, every other's own)."""
        await self.init()
        c = t.calls.c
        batched = c.batch.is_(True)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(c.input_tokens), 0),
                        func.coalesce(func.sum(c.output_tokens), 0),
                        func.coalesce(func.sum(c.cost_usd), 0.0),
                        func.coalesce(func.sum(case((batched, c.cost_usd), else_=0.0)), 0.0),
                        func.coalesce(func.sum(func.coalesce(c.online_cost_usd, c.cost_usd)), 0.0),
                        func.coalesce(func.sum(case((batched, 1), else_=0)), 0),
                    ).where(c.run == run)
                )
            ).one()
        return {
            "calls": int(row[0]), "input_tokens": int(row[1]), "output_tokens": int(row[2]), "usd": float(row[3]),
            "batch_usd": float(row[4]), "online_usd": float(row[5]), "batch_calls": int(row[6]),
        }

    @patient
    async def call_breakdown(self, run: str) -> dict[str, Any]:
        """Faults by kind and what followed them, and cost by agent, by role and by round."""
        await self.init()
        c = t.calls.c
        sums = (
            func.count(),
            func.coalesce(func.sum(c.input_tokens), 0),
            func.coalesce(func.sum(c.output_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
        )
        async with self.engine.connect() as conn:
            faults = await conn.execute(select(c.fault, func.count()).where(c.run == run, c.fault.is_not(None)).group_by(c.fault))
            outcomes = await conn.execute(
                select(c.outcome, func.count()).where(c.run == run, c.outcome.is_not(None)).group_by(c.outcome)
            )
            cached = (await conn.execute(select(func.count()).where(c.run == run, c.cached.is_(True)))).scalar()
            agents = await conn.execute(select(c.agent, *sums).where(c.run == run).group_by(c.agent).order_by(c.agent))
            roles = await conn.execute(select(c.role, *sums).where(c.run == run).group_by(c.role).order_by(c.role))
            rounds = await conn.execute(select(c.round, *sums).where(c.run == run).group_by(c.round).order_by(c.round))

            def row(r: Any) -> dict[str, Any]:
                return {"calls": int(r[1]), "input_tokens": int(r[2]), "output_tokens": int(r[3]), "usd": float(r[4])}

            return {
                "faults": {k: int(n) for k, n in faults} | {k: int(n) for k, n in outcomes},
                "cached": int(cached or 0),
                "by_agent": {r[0]: row(r) for r in agents},
                "by_role": {r[0]: row(r) for r in roles},
                "by_round": {int(r[0]): row(r) for r in rounds},
            }

    @patient
    async def round_cost(self, run: str, round_: int) -> float:
        await self.init()
        c = t.calls.c
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(select(func.coalesce(func.sum(c.cost_usd), 0.0)).where(c.run == run, c.round == round_))
            ).scalar()
        return float(value or 0.0)
