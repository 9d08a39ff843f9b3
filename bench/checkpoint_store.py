"""Checkpoint store throughput: cadsynth's SQL saver against LangGraph's own async savers.

One workload for every saver: THREADS threads x STEPS checkpoints, each checkpoint with a counter,
a small dict and a 20 KB document written at the first step and never changed, plus two tasks'
pending writes per checkpoint. Then `get_tuple` of each thread's latest checkpoint (ROUNDS times),
then a full `list` of every thread. Prints ops/s per operation and ours/theirs.

    .venv/bin/python bench/checkpoint_store.py [--threads 20] [--steps 25] [--rounds 5]

PostgreSQL (CADS_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test) is used in a
throwaway schema; that pair is skipped if the server does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.base.id import uuid6

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cadsynth.store import open_checkpointer  # noqa: E402

PG = os.environ.get("CADS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
OPS = ("put", "put_writes", "get_tuple", "list")


def _checkpoint(step: int, versions: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 4,
        "id": str(uuid6(clock_seq=step)),
        "ts": datetime.now(timezone.utc).isoformat(),
        "channel_values": values,
        "channel_versions": dict(versions),
        "versions_seen": {"node": dict(versions)},
        "updated_channels": sorted(values),
    }


async def workload(
    saver: BaseCheckpointSaver, threads: int, steps: int, rounds: int, prefix: str = "bench"
) -> dict[str, float]:
    """Ops/s per operation (list: whole-thread listings per second)."""
    doc = "lorem ipsum " * 1700  # ~20 KB
    timing = dict.fromkeys(OPS, 0.0)
    counts = dict.fromkeys(OPS, 0)
    heads: list[dict[str, Any]] = []
    for t in range(threads):
        config: dict[str, Any] = {"configurable": {"thread_id": f"{prefix}-{t}", "checkpoint_ns": ""}}
        versions: dict[str, Any] = {}
        for step in range(steps):
            changed = ["counter", "state"] + (["doc"] if step == 0 else [])
            for ch in changed:
                versions[ch] = saver.get_next_version(versions.get(ch), None)
            values = {
                "counter": step,
                "state": {"step": step, "notes": [f"note {i}" for i in range(8)], "score": step / 3},
                "doc": doc,
            }
            cp = _checkpoint(step, versions, values)
            metadata = {"source": "loop", "step": step, "parents": {}, "run_id": f"run-{t}"}
            started = time.perf_counter()
            config = await saver.aput(config, cp, metadata, {ch: versions[ch] for ch in changed})
            timing["put"] += time.perf_counter() - started
            counts["put"] += 1
            for task in range(2):
                writes = [("counter", step + 1), ("state", {"from": task, "step": step})]
                started = time.perf_counter()
                await saver.aput_writes(config, writes, str(uuid.uuid4()), task_path=f"~node:{task}")
                timing["put_writes"] += time.perf_counter() - started
                counts["put_writes"] += 1
        heads.append({"configurable": {"thread_id": f"{prefix}-{t}", "checkpoint_ns": ""}})
    for _ in range(rounds):
        for head in heads:
            started = time.perf_counter()
            tup = await saver.aget_tuple(head)
            timing["get_tuple"] += time.perf_counter() - started
            counts["get_tuple"] += 1
            assert tup is not None and tup.checkpoint["channel_values"]["doc"] == doc
            assert len(tup.pending_writes or []) == 4
    for head in heads:
        started = time.perf_counter()
        listed = [t async for t in saver.alist(head)]
        timing["list"] += time.perf_counter() - started
        counts["list"] += 1
        assert len(listed) == steps
    return {op: counts[op] / timing[op] for op in OPS}


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str | None]:
    """A throwaway schema on the bench server, or None if it does not answer."""
    import psycopg

    schema = f"cads_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await psycopg.AsyncConnection.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL at {PG} did not answer ({str(exc).strip()}); skipping the PostgreSQL pair")
        yield None
        return
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


async def measure(
    pair: list[tuple[str, Callable[[], Any]]], args: argparse.Namespace
) -> list[dict[str, float]]:
    """Run the workload on each saver of the pair, alternating, `--repeat` times; best ops/s each.

    Every run gets fresh thread ids, so later runs see a database holding the earlier ones.
    """
    best: list[dict[str, float]] = [dict.fromkeys(OPS, 0.0) for _ in pair]
    for rep in range(args.repeat):
        for i, (_, opener) in enumerate(pair):
            async with opener() as saver:
                got = await workload(saver, args.threads, args.steps, args.rounds, prefix=f"r{rep}")
            best[i] = {op: max(best[i][op], got[op]) for op in OPS}
    return best


def report(title: str, ours: dict[str, float], theirs: dict[str, float], their_name: str) -> None:
    print(f"\n{title}")
    print(f"  {'op':<11} {'ours ops/s':>11} {their_name + ' ops/s':>24} {'ours/theirs':>12}")
    for op in OPS:
        print(f"  {op:<11} {ours[op]:>11.0f} {theirs[op]:>24.0f} {ours[op] / theirs[op]:>12.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per saver; the best is kept")
    args = parser.parse_args()
    print(
        f"workload: {args.threads} threads x {args.steps} checkpoints, 2 put_writes each, "
        f"{args.rounds} get_tuple rounds, 1 list per thread; best of {args.repeat} alternating runs"
    )

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    with tempfile.TemporaryDirectory() as tmp:

        @asynccontextmanager
        async def lg_sqlite() -> AsyncIterator[AsyncSqliteSaver]:
            async with AsyncSqliteSaver.from_conn_string(f"{tmp}/langgraph.db") as saver:
                await saver.setup()
                yield saver

        ours, theirs = await measure(
            [("AsyncSqlSaver", lambda: open_checkpointer(f"sqlite:///{tmp}/cads.db")), ("AsyncSqliteSaver", lg_sqlite)],
            args,
        )
        sizes = {n: sum(p.stat().st_size for p in Path(tmp).glob(f"{n}.db*")) for n in ("cads", "langgraph")}
        report("SQLite: AsyncSqlSaver vs AsyncSqliteSaver", ours, theirs, "AsyncSqliteSaver")
        print(
            f"  database size after the runs: ours {sizes['cads'] / 1e6:.1f} MB, "
            f"theirs {sizes['langgraph'] / 1e6:.1f} MB"
        )

    async with pg_schema() as schema:
        if schema is None:
            return
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        url = _with_search_path(PG, schema)

        @asynccontextmanager
        async def lg_postgres() -> AsyncIterator[AsyncPostgresSaver]:
            async with AsyncPostgresSaver.from_conn_string(url) as saver:
                await saver.setup()
                yield saver

        ours, theirs = await measure(
            [("AsyncSqlSaver", lambda: open_checkpointer(url)), ("AsyncPostgresSaver", lg_postgres)], args
        )
        report("PostgreSQL: AsyncSqlSaver vs AsyncPostgresSaver", ours, theirs, "AsyncPostgresSaver")


if __name__ == "__main__":
    asyncio.run(main())
