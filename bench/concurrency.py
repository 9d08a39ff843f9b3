"""`concurrency: auto` against the two shapes of endpoint, side by side with fixed concurrencies.

Every request goes the way a run's do: an agent's `_ask` (its prompt, ChatOpenAI, the limiter)
to the fake OpenAI server (cadsynth.fakes) on 127.0.0.1, given a capacity model (fakes.capacity).
The client keeps many more calls waiting than any endpoint serves, as a run's phase does.

1. A self-hosted server (vLLM-like: a fixed number of sequences at once, slower the more it runs,
   a queue behind, never a 429): each fixed concurrency of a sweep for --fixed-seconds, then auto
   for --auto-seconds. Throughput from the server's log; latency is the server's (queue + service).
   Auto should reach 90% of the best fixed concurrency's throughput within 60 s, with median
   latency at most 1.5x the unloaded latency once settled.
2. A paid API (a hidden rate limit answered with 429 and Retry-After): auto for --api-seconds.
   After its first minute at most 2% of requests should get a 429, and throughput should be at
   least 90% of the hidden limit.
3. One auto limit shared: 4 lanes in one process, and 4 Ray workers, of `cads run` against one
   server with a queue that refuses (503) past its capacity: the server's own log of how full it
   got, and how many it refused.

Usage: python bench/concurrency.py [--fixed-seconds 12] [--auto-seconds 90] [--api-seconds 120] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from cads_process import cads, python, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.agents.limits import limiter_for  # noqa: E402
from cadsynth.agents.panel import Panel  # noqa: E402
from cadsynth.config import parse_config  # noqa: E402
from cadsynth.domain import JudgmentDraft  # noqa: E402
from cadsynth.fakes import FakeOpenAI  # noqa: E402
from cadsynth.fakes.capacity import RateLimited, Serving  # noqa: E402
from cadsynth.fakes.panelist import Panelist  # noqa: E402

KEY = "sk-bench"
WORKERS = 256  # calls waiting at once: a phase of a large run
MODEL = "qwen2.5-vl-7b"
VERDICT = {"answer": "3", "rationale": "three bars", "confidence": 0.9, "quality": 4}


def panel_for(server: FakeOpenAI, concurrency: Any) -> Panel:
    config = parse_config({
        "concurrency": "auto",
        "panel": [{"name": "qwen", "provider": "openai", "model": MODEL, "base_url": server.base_url,
                   "api_key_env": "CADS_BENCH_KEY", "roles": ["proposer", "judge"], "timeout": 60}],
        "adversary": False,
        "limits": [{"provider": "openai", "model": MODEL, "base_url": server.base_url, "concurrency": concurrency}],
        # Refusals are retried at once (after any Retry-After): the bench counts them.
        "retry": {"attempts": 20, "base_delay": 0.05, "max_delay": 1.0},
    })
    return Panel(config)


async def drive(panel: Panel, seconds: float) -> None:
    """WORKERS calls in a loop for `seconds`, each a judge's verdict on a question of its own."""
    agent = panel["qwen"]
    deadline = time.monotonic() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            count += 1
            await agent._ask(JudgmentDraft, f"How many bars? ({count})", [], role="judge")

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


def answered(server: FakeOpenAI, since: float, until: float) -> list[Any]:
    return [r for r in server.requests if r.status == 200 and since <= r.finished < until]


def throughput(server: FakeOpenAI, since: float, until: float) -> float:
    return len(answered(server, since, until)) / (until - since)


def median_latency(server: FakeOpenAI, since: float, until: float) -> float:
    return statistics.median(r.finished - r.started for r in answered(server, since, until))


def serving(args: argparse.Namespace) -> None:
    capacity = Serving(slots=16, service=0.5, slowdown=0.02)
    print(f"1. a self-hosted server: {capacity.slots} sequences at once, {capacity.service}s alone, "
          f"+{capacity.slowdown:.0%} a sequence served with it, a queue behind (no 429); "
          f"at most {capacity.best_throughput:.1f} requests/s")
    print(f"   {'concurrency':>12} {'req/s':>7} {'median latency s':>17}")
    best = 0.0
    for fixed in (2, 4, 8, 12, 16, 20, 24, 32, 48):
        with FakeOpenAI(lambda body: VERDICT, api_key=KEY) as server:
            server.capacity = Serving(capacity.slots, capacity.service, capacity.slowdown)
            start = time.monotonic()
            asyncio.run(drive(panel_for(server, fixed), args.fixed_seconds))
            # The first third is the ramp: measured after it.
            since, until = start + args.fixed_seconds / 3, start + args.fixed_seconds
            rate = throughput(server, since, until)
            best = max(best, rate)
            print(f"   {fixed:>12} {rate:7.1f} {median_latency(server, since, until):17.2f}")
    with FakeOpenAI(lambda body: VERDICT, api_key=KEY) as server:
        server.capacity = Serving(capacity.slots, capacity.service, capacity.slowdown)
        start = time.monotonic()
        panel = panel_for(server, "auto")
        asyncio.run(drive(panel, args.auto_seconds))
        windows = [(t, throughput(server, start + t - 10, start + t)) for t in range(10, int(args.auto_seconds) + 1, 2)]
        reached = next((t for t, rate in windows if rate >= 0.9 * best), None)
        settled = (start + args.auto_seconds - 30, start + args.auto_seconds)
        rate, latency = throughput(server, *settled), median_latency(server, *settled)
        control = limiter_for("openai", MODEL, server.base_url, panel.config.limit(panel["qwen"].config)).concurrency
        assert control is not None
        print(f"   {'auto':>12} {rate:7.1f} {latency:17.2f}   (last 30 s; settled at {control.limit}; "
              f"values {[v for _, v in list(control.changes)[:12]]}...)")
        print(f"   auto: {rate / best:.0%} of the best fixed concurrency's {best:.1f} req/s (target >= 90%), "
              f"first 10-s window at 90% after {reached} s (target <= 60 s); "
              f"median latency {latency / capacity.service:.2f}x the unloaded {capacity.service}s (target <= 1.5x)")


def api(args: argparse.Namespace) -> None:
    hidden = RateLimited(rate=20.0, latency=0.4)
    print(f"2. a paid API: a hidden limit of {hidden.rate:.0f} requests/s (429 + Retry-After past it), "
          f"{hidden.latency}s a request")
    with FakeOpenAI(lambda body: VERDICT, api_key=KEY) as server:
        server.capacity = hidden
        start = time.monotonic()
        panel = panel_for(server, "auto")
        asyncio.run(drive(panel, args.api_seconds))
        since, until = start + 60, start + args.api_seconds
        late = [r for r in server.requests if since <= r.started < until]
        refused = sum(r.status == 429 for r in late)
        rate = throughput(server, since, until)
        control = limiter_for("openai", MODEL, server.base_url, panel.config.limit(panel["qwen"].config)).concurrency
        assert control is not None
        print(f"   after the first minute: {refused} of {len(late)} requests got a 429 ({refused / max(1, len(late)):.1%}, "
              f"target <= 2%); {rate:.1f} answered/s = {rate / hidden.rate:.0%} of the hidden limit (target >= 90%); "
              f"concurrency settled at {control.limit}")


def shared(args: argparse.Namespace) -> None:
    capacity = dict(slots=8, service=0.3, slowdown=0.02, max_waiting=8)
    print(f"3. one auto limit shared by 4 lanes: a server of {capacity['slots']} sequences and a queue of "
          f"{capacity['max_waiting']} (503 past them), `cads run --lanes 4` with `concurrency: auto`")
    runs = [("4 lanes, one process", [])]
    address = None
    if not args.no_ray:
        import ray

        context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        address = context.address_info["gcs_address"]
        runs.append(("4 Ray workers", ["--ray", address]))
    try:
        for name, extra in runs:
            with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(Panelist(), api_key=KEY) as server:
                server.capacity = Serving(**capacity)  # type: ignore[arg-type]
                work = Path(tmp)
                config = {
                    "rounds": 2, "target": 1000, "lanes": 4, "proposals_per_agent": 4, "seed": 2,
                    "concurrency": "auto",
                    "panel": [{"name": "qwen", "provider": "openai", "model": MODEL, "base_url": server.base_url,
                               "api_key_env": "CADS_BENCH_KEY", "roles": ["proposer", "critic", "judge", "adversary"]}],
                }
                if extra:
                    config["ray"] = {"lane_cpus": 0.5}  # every lane at once on 2 CPUs
                (work / "shared.yaml").write_text(yaml.safe_dump(config))
                db = _database(work, bool(extra))
                cads("run", "shared.yaml", "--db", db, "--run-id", "shared", *extra, cwd=work)
                fake = server.capacity
                assert isinstance(fake, Serving)
                print(f"   {name}: {len(server.requests)} requests; the server had at most {fake.peak_busy} in service "
                      f"and {fake.peak_waiting} queued (capacity {fake.slots} + {fake.max_waiting}); refused {fake.refused}")
    finally:
        if address is not None:
            import ray

            ray.shutdown()


def _database(work: Path, on_ray: bool) -> str:
    if not on_ray:
        return f"sqlite:///{work / 'cads.db'}"
    import psycopg

    schema = f"cads_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixed-seconds", type=float, default=12.0)
    parser.add_argument("--auto-seconds", type=float, default=90.0)
    parser.add_argument("--api-seconds", type=float, default=120.0)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--only", choices=["serving", "api", "shared"], default=None)
    args = parser.parse_args()
    os.environ["CADS_BENCH_KEY"] = KEY
    print("All figures: fake servers on this machine (cadsynth.fakes), real clients.")
    for part in (serving, api, shared):
        if args.only in (None, part.__name__):
            part(args)


if __name__ == "__main__":
    python()
    main()
