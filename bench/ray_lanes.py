"""Ray's overhead: the same lanes in one process and on a local Ray cluster, over PostgreSQL.

1. N lanes of the simulated panel, each call answering after --latency seconds (like a fast model),
   in one process (`cads run --lanes N`) and on a local Ray cluster (`cads run --lanes N --ray
   ADDRESS`, each lane a task in a worker process of its own): wall time, model calls per second,
   and whether the two made the same data set.
2. A limited endpoint shared by 4 workers: 4 lanes of one OpenAI-compatible agent on the fake
   OpenAI server (cadsynth.fakes), limited to --rpm and --concurrency; from the server's own request
   log, the most requests it had in flight, the busiest second and the closest two requests, against
   the limits.
3. What a permit costs: acquire + release round trips to an endpoint's desk actor, in sequence.

Usage: python bench/ray_lanes.py [--lanes 4] [--latency 0.2] [--rounds 2] [--rpm 600] [--concurrency 4]
PostgreSQL: CADS_BENCH_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test), in a throwaway schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

import yaml

from cads_process import cads, python, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.fakes import FakeOpenAI  # noqa: E402  (a real HTTP endpoint on 127.0.0.1)
from cadsynth.fakes.panelist import Panelist  # noqa: E402

PG = os.environ.get("CADS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def calls(db: str, run: str) -> int:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(db)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
                         options=url.query["options"], autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM cads_calls WHERE run LIKE %s", (f"{run}.lane%",)).fetchone()
        return int(row[0]) if row else 0


def export(db: str, run: str, work: Path) -> list[str]:
    out = work / f"{run}-export"
    cads("export", run, "--db", db, "--out", str(out), cwd=work)
    return [json.dumps({k: v for k, v in json.loads(line).items() if k not in ("id", "run", "image")}, sort_keys=True)
            for line in (out / "samples.jsonl").read_text().splitlines()]


def timed(*args: str, cwd: Path) -> float:
    t0 = time.monotonic()
    cads(*args, cwd=cwd)
    return time.monotonic() - t0


async def permit_cost(n: int) -> float:
    import ray

    from cadsynth.agents.limits import PermitDesk
    from cadsynth.config import Limit

    desk = ray.remote(PermitDesk).options(num_cpus=0, max_concurrency=1000).remote(
        Limit(provider="openai", model="m", concurrency=4)
    )
    await desk.in_use.remote()  # started
    t0 = time.monotonic()
    for _ in range(n):
        permit = await desk.acquire.remote("bench@1", 100)
        await desk.release.remote(permit)
    return (time.monotonic() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    import psycopg
    import ray

    schema = f"cads_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    db = f"{PG}?options=-csearch_path%3D{schema}"
    t0 = time.monotonic()
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    started = time.monotonic() - t0
    address = context.address_info["gcs_address"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
            for agent in config["panel"]:
                agent["sim"]["latency"] = args.latency
            # Every lane at once on 2 CPUs: lanes wait on their models, not on the CPU.
            config["ray"] = {"lane_cpus": 2 / args.lanes}
            (work / "slow.yaml").write_text(yaml.safe_dump(config))
            common = ["slow.yaml", "--lanes", str(args.lanes), "--rounds", str(args.rounds), "--target", "100000",
                      "--seed", "3", "--db", db]
            here = timed("run", *common, "--run-id", "here", cwd=work)
            there = timed("run", *common, "--run-id", "there", "--ray", address, cwd=work)
            n_here, n_there = calls(db, "here"), calls(db, "there")
            same = export(db, "here", work) == export(db, "there", work)
            print(f"{args.lanes} lanes x {args.rounds} rounds, simulated panel answering after {args.latency}s "
                  f"(PostgreSQL; local Ray cluster of 2 CPUs, started in {started:.1f}s)")
            print(f"  {'':12} {'wall s':>8} {'calls':>7} {'calls/s':>8}")
            print(f"  {'one process':12} {here:8.1f} {n_here:7d} {n_here / here:8.1f}")
            print(f"  {'on Ray':12} {there:8.1f} {n_there:7d} {n_there / there:8.1f}")
            print(f"  Ray's overhead: {there - here:+.1f}s for the run; same data set: {same}")

            with FakeOpenAI(Panelist(), latency=args.latency) as server:
                limited = {
                    "rounds": 1, "target": 1000, "lanes": 4, "proposals_per_agent": 3, "seed": 2,
                    "ray": {"lane_cpus": 0.5},
                    "limits": [{"provider": "openai", "model": "gpt-4o", "rpm": args.rpm, "concurrency": args.concurrency}],
                    "panel": [{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url,
                               "roles": ["proposer", "critic", "judge", "adversary"]}],
                }
                (work / "limited.yaml").write_text(yaml.safe_dump(limited))
                cads("run", "limited.yaml", "--ray", address, "--db", db, "--run-id", "limited", cwd=work)
                starts = sorted(r.started for r in server.requests)
                in_flight = server.stats.snapshot()["max_in_flight"]
            busiest = max(sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts))
            closest = min(b - a for a, b in zip(starts, starts[1:]))
            print(f"4 workers, one endpoint limited to {args.rpm} rpm and {args.concurrency} in flight "
                  f"({len(starts)} requests, {args.latency}s each):")
            print(f"  most in flight {in_flight} (limit {args.concurrency}); busiest second {busiest} requests "
                  f"(limit {args.rpm / 60:.0f} a second; a window can hold both ends of the spacing, so +1); "
                  f"closest two requests {closest:.3f}s apart (spacing {60 / args.rpm:.3f}s)")
            cost = asyncio.run(permit_cost(500))
            print(f"a permit from the endpoint's desk actor (acquire + release, in sequence): {cost * 1000:.2f} ms")
    finally:
        ray.shutdown()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


if __name__ == "__main__":
    python()
    main()
