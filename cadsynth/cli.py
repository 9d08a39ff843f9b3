"""`cads`: run a debate, and read what it produced."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel as RichPanel
from rich.table import Table

from cadsynth.config import ConfigError, RunConfig, load_config, parse_config
from cadsynth.graphs.settings import Settings
from cadsynth.report import UnknownRunError, export_jsonl, stats, transcript
from cadsynth.runner import Fork, Progress, RunStateError, execute, new_run_id
from cadsynth.seeds import SeedError, load_seeds
from cadsynth.store.blobs import BlobStore
from cadsynth.store.db import DatabaseURLError, normalize_url
from cadsynth.store.ledger import LeaseError, Ledger

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
errors = Console(stderr=True)

DEFAULT_DB = "sqlite:///cads.db"
DbOption = Annotated[str, typer.Option("--db", envvar="CADS_DB", help="Database URL (SQLite or PostgreSQL)")]
DataOption = Annotated[Path, typer.Option("--data", envvar="CADS_DATA", help="Folder for images")]


def fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def _check_db(db: str) -> None:  # before any engine exists, so a bad URL writes nothing
    try:
        normalize_url(db, asynchronous=True)
    except DatabaseURLError as exc:
        fail(str(exc))


def _read(db: str, query: Any) -> Any:
    """Run one async ledger query and close the engine, turning known errors into one line."""
    _check_db(db)

    async def go() -> Any:
        ledger = Ledger.open(db)
        try:
            return await query(ledger)
        finally:
            await ledger.close()

    try:
        return asyncio.run(go())
    except UnknownRunError as exc:
        fail(str(exc))


def _progress_view(p: Progress) -> RichPanel:
    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", p.run)
    grid.add_row("round", str(p.round))
    grid.add_row("phase", p.phase)
    grid.add_row("kept", str(p.counts["keep"] + p.counts["adversarial"]))
    grid.add_row("adversarial", str(p.counts["adversarial"]))
    grid.add_row("discarded", str(p.counts["discard"]))
    return RichPanel(grid, title="cads run", expand=False)


def _execute(settings: Settings, run: str, config: RunConfig | None = None, fork: Fork | None = None) -> None:
    live = Live(_progress_view(Progress(run=run)), console=console, transient=False, auto_refresh=False)
    with live:
        try:
            asyncio.run(
                execute(settings, run, config, fork=fork, on_update=lambda p: live.update(_progress_view(p), refresh=True))
            )
        except (LeaseError, RunStateError) as exc:
            live.stop()
            fail(str(exc))


def _summary(db: str, run_name: str) -> None:
    summary = _read(db, lambda ledger: stats(ledger, run_name))
    console.print(
        f"\nkept {summary['kept']} samples ({summary['adversarial']} adversarial), discarded {summary['discarded']}, "
        f"{summary['model_calls']} model calls. Export with: cads export {run_name} --out {run_name}.jsonl"
    )


def _load(config_path: Path | None) -> RunConfig:
    try:
        config = load_config(config_path)
        if config.seeds is not None:
            load_seeds(config.seeds)
    except (ConfigError, SeedError) as exc:
        fail(str(exc))
    return config


def _new_run_name(db: str, run_id: str | None) -> str:
    run_name = run_id or new_run_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", run_name):
        fail(f"--run-id {run_name!r}: use letters, digits, '.', '_' or '-' (at most 128)")
    if _read(db, lambda ledger: ledger.run(run_name)) is not None:
        fail(f"run {run_name!r} already exists; pick another --run-id or continue it with `cads resume {run_name}`")
    return run_name


@app.command()
def run(
    config_path: Annotated[Path | None, typer.Argument(metavar="[CONFIG.yaml]", help="Panel config; none = simulated panel")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name for the run (default: generated)")] = None,
    rounds: Annotated[int | None, typer.Option(help="Override the config's rounds")] = None,
    target: Annotated[int | None, typer.Option(help="Stop once this many samples are kept")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed")] = None,
    no_adversary: Annotated[bool, typer.Option("--no-adversary", help="Never change the context (ablation)")] = False,
) -> None:
    """Synthesize a data set: rounds of propose, paint, critique, judge and adversary."""
    # Everything is checked before anything is written.
    config = _load(config_path)
    overrides = {"rounds": rounds, "target": target, "seed": seed}
    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if no_adversary:
        update["adversary"] = False
    if update:
        try:
            config = parse_config({**config.model_dump(), **update}, "options")
        except ConfigError as exc:
            fail(str(exc))
    run_name = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{run_name}[/bold]")
    _execute(Settings(db_url=db, data_dir=str(data)), run_name, config)
    _summary(db, run_name)


@app.command()
def resume(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Continue an interrupted run from its last checkpoint; finished model calls are not made again."""
    _execute(Settings(db_url=db, data_dir=str(data)), run_name)
    _summary(db, run_name)


@app.command()
def replay(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    round_: Annotated[int, typer.Option("--round", help="Fork at the checkpoint before this round")],
    config_path: Annotated[Path | None, typer.Option("--config", help="Another panel config for the fork")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name for the new run (default: generated)")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Fork a run before round N into a new run and run it from there; the original is untouched."""
    config = _load(config_path) if config_path is not None else None
    new_run = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{new_run}[/bold] (fork of {run_name} at round {round_})")
    _execute(Settings(db_url=db, data_dir=str(data)), new_run, fork=Fork(parent=run_name, round=round_, config=config))
    _summary(db, new_run)


@app.command()
def runs(db: DbOption = DEFAULT_DB) -> None:
    """List the runs in the database."""
    rows = _read(db, lambda ledger: ledger.runs())
    table = Table("run", "status", "parent", "seed", "created")
    for r in rows:
        parent = f"{r['parent']}@{r['fork_round']}" if r["parent"] else ""
        table.add_row(r["id"], r["status"], parent, str(r["seed"]), str(r["created_at"])[:19])
    console.print(table)


@app.command()
def show(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    round_: Annotated[int, typer.Option("--round", help="Which round's debate to show")] = 0,
    db: DbOption = DEFAULT_DB,
) -> None:
    """The debate transcript of one round: proposals, critiques, judges' answers, consensus, context."""
    t = _read(db, lambda ledger: transcript(ledger, run_name, round_))
    run_row = t["run"]
    header = f"run {run_name}  status {run_row['status']}  round {round_}"
    if run_row["parent"]:
        header += f"  forked from {run_row['parent']} at round {run_row['fork_round']}"
    if t["forks"]:
        header += f"  forks: {', '.join(t['forks'])}"
    console.print(header, markup=False)
    if t["context_before"] is not None:
        ctx = t["context_before"]
        console.print(f"\n[bold]context v{ctx.version}[/bold] difficulty {ctx.difficulty_target:.2f}: {ctx.guidance}")
    for p in t["proposals"]:
        verdict = t["consensus"].get(p.id)
        label = "pending" if verdict is None else (f"{verdict.outcome} C={verdict.score}/{verdict.judges}")
        console.rule(f"{p.id}  [{label}]")
        console.print(f"{p.strategy}; {', '.join(p.capabilities)}; difficulty {p.difficulty:.2f}; revision {p.revision}", markup=False)
        console.print(f"Q: {p.question}", markup=False)
        if p.choices:
            console.print("   " + "  ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(p.choices)), markup=False)
        console.print(f"reference: {p.reference_answer}", markup=False)
        for c in t["critiques"]:
            if c.proposal == p.id:
                console.print(f"  critic {c.critic}: {c.verdict} {'; '.join(c.issues)}", markup=False)
        for j in t["judgments"]:
            if j.proposal == p.id:
                mark = "=" if j.agrees else "x"
                console.print(f"  judge {j.judge} [{mark}] {j.answer} (confidence {j.confidence:.2f})", markup=False)
    if t["context_after"] is not None:
        ctx = t["context_after"]
        console.print(f"\n[bold]adversary -> context v{ctx.version}[/bold] difficulty {ctx.difficulty_target:.2f}")
        console.print(f"reflection: {ctx.reflection}\nguidance: {ctx.guidance}", markup=False)


@app.command("stats")
def stats_cmd(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Counts, per-round figures and (for simulated runs) how accurate the kept data really is."""
    s = _read(db, lambda ledger: stats(ledger, run_name))
    if as_json:
        sys.stdout.write(json.dumps(s) + "\n")
        return
    table = Table("round", "proposals", "kept", "adversarial", "discarded", "mean difficulty")
    for r in s["rounds"]:
        table.add_row(*(str(r[k]) for k in ("round", "proposals", "kept", "adversarial", "discarded")), f"{r['mean_difficulty']:.2f}")
    console.print(table)
    console.print(
        f"{s['run']} ({s['status']}): {s['proposals']} proposals, {s['kept']} kept, {s['adversarial']} adversarial, "
        f"{s['discarded']} discarded, {s['model_calls']} model calls",
        markup=False,
    )
    if "truth" in s:
        truth = s["truth"]
        console.print(
            f"simulated truth: {truth['proposal_correct_rate']:.1%} of proposals correct, "
            f"{(truth['kept_correct_rate'] or 0):.1%} of kept samples correct"
        )


@app.command()
def export(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    out: Annotated[Path, typer.Option("--out", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", help="Only jsonl for now")] = "jsonl",
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Write the kept samples, one JSON object per line, with provenance."""
    if fmt != "jsonl":
        fail(f"--format {fmt!r} is not supported; use --format jsonl")
    n = _read(db, lambda ledger: export_jsonl(ledger, BlobStore(data), run_name, out))
    console.print(f"wrote {n} samples to {out}")


if __name__ == "__main__":
    app()
