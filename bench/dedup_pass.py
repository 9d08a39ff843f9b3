"""The near-duplicate pass over a stored run: its time and the memory it takes.

Runs the pass (`graphs.dedup.settle`) over RUN of the SQLite store --db, in this process, and prints
the wall time, the process's resident memory before the pass and its high-water mark after it (the
difference is what the pass adds to a run's process when the run stops), and what it removed. The
pass writes the run's removals again (the same ones), so point it at a copy if the store matters.
Any stored run with the gate on will do; docs/scale.md quotes the 100,000-sample run of
`bench/paper_scale.py --settings weighted-dedup`. Linux only (it reads /proc).

Usage: python bench/dedup_pass.py --db cads.db --run RUN
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from cads_process import memory_mib, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.graphs import dedup  # noqa: E402
from cadsynth.store.ledger import Ledger  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--run", required=True)
    args = parser.parse_args()
    if not args.db.is_file():
        raise SystemExit(f"error: no store at {args.db}; give --db the cads.db of a run with the near-duplicate gate on")
    ledger = Ledger.open(f"sqlite:///{args.db}", create=False)
    try:
        if await ledger.run(args.run) is None:
            raise SystemExit(f"error: no run {args.run!r} in {args.db}; `cads runs` lists the runs")
        members = [lane["id"] for lane in await ledger.lanes(args.run)] or [args.run]
        problems = sum([await ledger.fingerprinted(member) for member in members])
        before = memory_mib("VmRSS")
        start = time.perf_counter()
        removed = await dedup.settle(ledger, args.run)
        seconds = time.perf_counter() - start
        peak = memory_mib("VmHWM")
    finally:
        await ledger.close()
    print(
        f"near-duplicate pass over {problems} fingerprinted problems: {seconds:.1f} s, {len(removed)} removed; "
        f"memory {before:.0f} MiB before, {peak:.0f} MiB at its peak (+{peak - before:.0f} MiB)"
    )


if __name__ == "__main__":
    asyncio.run(main())
