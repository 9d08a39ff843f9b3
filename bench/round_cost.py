"""What one round costs as a run grows: statements, rows read and CPU per round, early and late.

Runs one lane of the built-in simulated panel in this process for --rounds rounds (no target stops
it) and counts, between one round's close and the next, the SQL statements the store sent, the
rows they returned and the steps SQLite's virtual machine took for them (what a query scans, not
only what it returns), by table, and the process's CPU time. Statements, rows and steps do not
depend on how busy the machine is: a flat cost per sample shows as the same figures at round 5 as
at round 200. (The painter's worker processes are not counted.)

With --heavy the run has `consensus: {weighted: true}` and the near-duplicate gate on.

Usage: python bench/round_cost.py [--rounds 200] [--heavy] [--at 5 50 100 200] [--window 5]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cads_process import reexec_with_cadsynth

reexec_with_cadsynth()
from sqlalchemy import Engine, event  # noqa: E402
from sqlalchemy.util import await_only  # noqa: E402

from cadsynth import runner  # noqa: E402
from cadsynth.config import load_config  # noqa: E402
from cadsynth.graphs.settings import Settings, close_resources  # noqa: E402
from cadsynth.store.records import Records  # noqa: E402

TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)
STEPS = 100  # SQLite calls the progress handler every this many virtual-machine steps


class Meter:
    """Statements and rows read since the last round closed, and the CPU time, per closed round."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.steps: Counter[str] = Counter()
        self.stepped: Counter[int] = Counter()  # SQLite VM steps so far, per connection
        self.started: dict[int, int] = {}
        self.cpu = time.process_time()
        self.rounds: list[dict[str, Any]] = []

    def connected(self, dbapi_connection: Any, _: Any) -> None:
        key = id(dbapi_connection)

        def step() -> int:
            self.stepped[key] += STEPS
            return 0  # go on

        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None:  # aiosqlite, the ledger's: its connection lives in a thread of its own
            await_only(driver.set_progress_handler(step, STEPS))
        else:  # pysqlite, the checkpoint saver's own engine on a SQLite file
            dbapi_connection.set_progress_handler(step, STEPS)

    def executing(self, conn: Any, *_: Any) -> None:
        key = id(conn.connection.dbapi_connection)  # a connection runs one statement at a time
        self.started[key] = self.stepped[key]

    def executed(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        found = TABLE.search(statement)
        table = found.group(1) if found else statement.split()[0].lower()
        self.statements[table] += 1
        self.rows[table] += len(getattr(cursor, "_rows", ()) or ())  # SQLAlchemy's async adapters fetch every row at once
        key = id(conn.connection.dbapi_connection)
        self.steps[table] += self.stepped[key] - self.started.pop(key, self.stepped[key])

    def closed(self, round_: int) -> None:
        now = time.process_time()
        self.rounds.append(
            {"round": round_, "statements": self.statements, "rows": self.rows, "steps": self.steps, "cpu": now - self.cpu}
        )
        self.statements, self.rows, self.steps, self.cpu = Counter(), Counter(), Counter(), now


async def measure(rounds: int, heavy: bool, work: Path) -> Meter:
    config = load_config(None)
    update: dict[str, Any] = {"rounds": rounds, "target": 10**9}
    if heavy:
        update["consensus"] = config.consensus.model_copy(update={"weighted": True})
        update["gates"] = config.gates.model_copy(
            update={"near_duplicates": config.gates.near_duplicates.model_copy(update={"enabled": True})}
        )
    config = config.model_validate(config.model_dump() | update)
    settings = Settings(db_url=f"sqlite:///{work / 'cads.db'}", data_dir=str(work / "data"))
    meter = Meter()
    # Every engine of the process: the ledger's, and on SQLite the checkpoint saver's own.
    event.listen(Engine, "connect", meter.connected)
    event.listen(Engine, "before_cursor_execute", meter.executing)
    event.listen(Engine, "after_cursor_execute", meter.executed)
    put_round = Records.put_round

    async def counted(self: Records, summary: Any) -> None:
        await put_round(self, summary)
        meter.closed(summary.round)

    Records.put_round = counted  # type: ignore[method-assign]
    try:
        await runner.execute(settings, "probe", config)
    finally:
        Records.put_round = put_round  # type: ignore[method-assign]
        await close_resources()
    return meter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--heavy", action="store_true", help="consensus: {weighted: true} and the near-duplicate gate on")
    parser.add_argument("--at", type=int, nargs="+", default=None, help="rounds to report (default: 5 and spread to --rounds)")
    parser.add_argument("--window", type=int, default=5, help="rounds averaged at each point")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        meter = asyncio.run(measure(args.rounds, args.heavy, Path(work)))
    at = args.at or sorted({5, args.rounds // 4, args.rounds // 2, args.rounds - args.window})
    setting = "weighted consensus + near-duplicate gate" if args.heavy else "the built-in config"
    print(f"simulated panel, {setting}, one lane, {args.rounds} rounds; per round, mean of {args.window} rounds from each point")
    base: dict[str, float] | None = None
    for start in at:
        window = [r for r in meter.rounds if start <= r["round"] < start + args.window]
        if not window:
            continue
        n = len(window)
        figures = {
            "statements": sum(sum(r["statements"].values()) for r in window) / n,
            "rows": sum(sum(r["rows"].values()) for r in window) / n,
            "steps": sum(sum(r["steps"].values()) for r in window) / n,
            "cpu": sum(r["cpu"] for r in window) / n,
        }
        base = base or figures
        rows, steps = Counter[str](), Counter[str]()
        for r in window:
            rows.update(r["rows"])
            steps.update(r["steps"])
        print(
            f"  round {start:4d}: {figures['statements']:5.0f} statements ({figures['statements'] / base['statements']:4.2f}x), "
            f"{figures['rows']:6.0f} rows read ({figures['rows'] / base['rows']:5.2f}x), "
            f"{figures['steps'] / 1000:7.0f}k SQLite steps ({figures['steps'] / base['steps']:5.2f}x), "
            f"{1000 * figures['cpu']:5.0f} ms CPU ({figures['cpu'] / base['cpu']:4.2f}x)\n"
            f"              rows by table: {', '.join(f'{t} {v / n:.0f}' for t, v in rows.most_common(4))}; "
            f"steps by table: {', '.join(f'{t} {v / n / 1000:.0f}k' for t, v in steps.most_common(4))}"
        )


if __name__ == "__main__":
    main()
