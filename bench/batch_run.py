"""A batching run against the fake OpenAI-compatible servers' Batch API, beside the same run online.

Two agents on two fake servers (one brain, so the answers agree) make a data set of about `--target`
samples online, then the same run with `batch: true`. Prints, for the batch run: its jobs, requests
and bytes per job, the submit overhead per request (from storing a job to the provider having made
its batch: building the JSONL file, uploading it, creating the batch) and the collect overhead per
request (from starting to read a finished job's output to its answers being stored), both read off
the fake's log and the store; and each run's wall time, model calls and cost, batch against online.

Usage: python bench/batch_run.py [--target 1000] [--lanes 8] [--gather 0.5]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from cads_process import cads, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.fakes import FakeOpenAI  # noqa: E402  (real HTTP endpoints on 127.0.0.1)
from cadsynth.fakes.panelist import Panelist  # noqa: E402

KEYS = {"BENCH_KEY_A": "sk-bench-a", "BENCH_KEY_B": "sk-bench-b"}


def config(a: str, b: str, target: int, lanes: int, gather: float, batch: bool) -> dict:
    return {
        "rounds": 100, "target": target, "lanes": lanes, "proposals_per_agent": 8, "seed": 1, "concurrency": 64,
        "batch": batch, "batching": {"gather": gather, "poll": 0.1},
        "panel": [
            {"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": a, "api_key_env": "BENCH_KEY_A",
             "roles": ["proposer", "critic", "judge", "adversary"]},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "base_url": b, "api_key_env": "BENCH_KEY_B",
             "structured_output": "function_calling", "roles": ["proposer", "critic", "judge"]},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--gather", type=float, default=0.5, help="seconds without a new call before a job goes")
    args = parser.parse_args()
    import os

    os.environ.update(KEYS)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="cads-bench-batch-") as tmp:
        for mode in ("online", "batch"):
            work = Path(tmp) / mode
            work.mkdir()
            brain = Panelist()
            with FakeOpenAI(brain, api_key=KEYS["BENCH_KEY_A"]) as a, FakeOpenAI(brain, api_key=KEYS["BENCH_KEY_B"]) as b:
                (work / "panel.yaml").write_text(yaml.safe_dump(config(a.base_url, b.base_url, args.target, args.lanes, args.gather, mode == "batch")))
                t0 = time.monotonic()
                cads("run", "panel.yaml", "--run-id", mode, cwd=work)
                wall = time.monotonic() - t0
                stats = json.loads(cads("stats", mode, "--json", cwd=work).stdout)
                figures[mode] = {"wall": wall, "stats": stats}
                if mode == "batch":
                    figures["jobs"] = jobs(work / "cads.db", (a, b))
    online, batch = figures["online"], figures["batch"]
    jobs_ = figures["jobs"]
    requests = [j["requests"] for j in jobs_]
    sizes = [j["bytes"] for j in jobs_]
    total = sum(requests)
    print(f"batch run: {batch['stats']['kept']} samples kept, {len(jobs_)} jobs, {total} requests")
    print(f"requests per job: mean {statistics.mean(requests):.0f}, median {statistics.median(requests):.0f}, max {max(requests)}")
    print(f"bytes per job: mean {statistics.mean(sizes) / 1e3:.0f} kB, max {max(sizes) / 1e3:.0f} kB "
          f"({statistics.mean(s / r for s, r in zip(sizes, requests)) / 1e3:.1f} kB a request)")
    print(f"submit overhead: {1e3 * sum(j['submit'] for j in jobs_) / total:.2f} ms a request "
          f"(store the job, build and upload its file, create the batch)")
    print(f"collect overhead: {1e3 * sum(j['collect'] for j in jobs_) / total:.2f} ms a request "
          f"(read the output file, store every answer)")
    for name, run in (("online", online), ("batch", batch)):
        s = run["stats"]
        print(f"{name}: wall {run['wall']:.1f} s, {s['model_calls']} model calls, {s['kept']} kept, cost ${s['cost']['usd']:.4f}")
    print(f"batch cost / online cost: {batch['stats']['cost']['usd'] / online['stats']['cost']['usd']:.3f} "
          f"(the batch run's calls would have cost ${batch['stats']['cost']['online_usd']:.4f} online)")


def jobs(db: Path, fakes: tuple[FakeOpenAI, ...]) -> list[dict]:
    """Each job of the batch run with its submit and collect overheads (seconds), from the store and
    the fakes' own log (their clock is this process's: monotonic times are turned into wall times)."""
    offset = time.time() - time.monotonic()
    made, reads = {}, {}
    for fake in fakes:  # ids are each server's own: keyed by the server's URL too
        for obj, created in fake.batches_made:
            made[fake.base_url, obj["id"]] = (obj, created + offset)
        for rec in fake.requests:
            if rec.route == "files.content":
                reads[fake.base_url, rec.path.split("/")[3]] = rec.started + offset
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT endpoint, provider_id, requests, bytes, created_at, updated_at FROM cads_batch_jobs WHERE state = 'collected'"
        ).fetchall()
    out = []
    for endpoint, provider_id, n, size, stored, collected in rows:
        obj, created = made[endpoint, provider_id]
        read = reads[endpoint, obj["output_file_id"]]
        out.append({"requests": n, "bytes": size, "submit": created - stored, "collect": collected - read})
    return out


if __name__ == "__main__":
    main()
