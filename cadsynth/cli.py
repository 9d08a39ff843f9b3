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

from cadsynth.agents.calls import ModelCallError
from cadsynth.agents.models import missing_keys
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
BudgetOption = Annotated[
    float | None, typer.Option("--budget", min=0.0, help="USD: stop at a round boundary before the run could pass it")
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Ask the models again even for identical calls")]


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


def _check_keys(config: RunConfig) -> None:
    """Every missing key, one line per agent, before anything is called or written."""
    problems = missing_keys(config)
    if problems:
        for line in problems:
            errors.print(f"error: {line}", markup=False, highlight=False)
        raise typer.Exit(2)


def _execute(
    settings: Settings, run: str, config: RunConfig | None = None, fork: Fork | None = None, budget: float | None = None
) -> None:
    live = Live(_progress_view(Progress(run=run)), console=console, transient=False, auto_refresh=False)
    with live:
        try:
            progress = asyncio.run(
                execute(
                    settings,
                    run,
                    config,
                    fork=fork,
                    budget=budget,
                    on_update=lambda p: live.update(_progress_view(p), refresh=True),
                )
            )
        except (LeaseError, RunStateError) as exc:
            live.stop()
            fail(str(exc))
        except ModelCallError as exc:
            live.stop()
            fail(f"{exc}; the run is marked failed, fix the agent and `cads resume {run}`", code=1)
    if progress.stopped:
        why = progress.stopped
        console.print(
            f"\nstopped before round {why['round']}: spent ${why['spent_usd']:.4f} of the ${why['budget_usd']:.4f} budget, "
            f"and the last round cost ${why['next_round_usd']:.4f}. Continue with: cads resume {run} --budget USD",
            markup=False,
        )


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
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the calls, tokens and cost a real run would take; calls nothing")
    ] = False,
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
    if dry_run:
        _dry_run(config)
        return
    _check_keys(config)
    run_name = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{run_name}[/bold]")
    _execute(Settings(db_url=db, data_dir=str(data), cache=not no_cache), run_name, config, budget=budget)
    _summary(db, run_name)


def _dry_run(config: RunConfig) -> None:
    from cadsynth.dryrun import estimate

    with console.status("playing the run with simulated stand-ins..."):
        est = estimate(config)
    table = Table("agent", "stands in for", "calls", "input tokens", "output tokens", "USD", title="dry run (estimate)")
    for r in est.rows:
        price = f"{r['usd']:.4f}" if r["priced"] else "unpriced"
        table.add_row(
            r["agent"], f"{r['provider']} {r['model']}", str(r["calls"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", price
        )
    t = est.total
    table.add_row("total", "", str(t["calls"]), f"{t['input_tokens']:,}", f"{t['output_tokens']:,}", f"{t['usd']:.4f}", style="bold")
    console.print(table)
    console.print(
        f"{est.rounds} rounds, {est.proposals} proposals, {est.kept} kept, as played by simulated stand-ins with the "
        "real prompts and prices. Unpriced models count as free; add them under `prices:`.",
        markup=False,
    )


@app.command()
def resume(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Continue an interrupted or stopped run from its last checkpoint; finished model calls are not made again."""
    record = _read(db, lambda ledger: ledger.run(run_name))
    if record is not None:
        _check_keys(RunConfig.model_validate(record["config"]))
        if record["status"] == "stopped" and record["budget_usd"] is not None and (budget or 0) <= record["budget_usd"]:
            fail(f"run {run_name!r} stopped at its budget of ${record['budget_usd']:.4f}; resume it with a higher --budget")
    _execute(Settings(db_url=db, data_dir=str(data), cache=not no_cache), run_name, budget=budget)
    _summary(db, run_name)


@app.command()
def replay(
    run_name: Annotated[str, typer.Argument(metavar="RUN")],
    round_: Annotated[int, typer.Option("--round", help="Fork at the checkpoint before this round")],
    config_path: Annotated[Path | None, typer.Option("--config", help="Another panel config for the fork")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name for the new run (default: generated)")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Fork a run before round N into a new run and run it from there; the original is untouched."""
    config = _load(config_path) if config_path is not None else None
    parent = _read(db, lambda ledger: ledger.run(run_name))
    if config is not None or parent is not None:
        _check_keys(config or RunConfig.model_validate(parent["config"]))
    new_run = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{new_run}[/bold] (fork of {run_name} at round {round_})")
    _execute(
        Settings(db_url=db, data_dir=str(data), cache=not no_cache),
        new_run,
        fork=Fork(parent=run_name, round=round_, config=config),
        budget=budget,
    )
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
    cost = s["cost"]
    budget = f" of a ${cost['budget_usd']:.4f} budget" if cost["budget_usd"] is not None else ""
    console.print(
        f"cost: ${cost['usd']:.4f}{budget} ({cost['input_tokens']:,} input, {cost['output_tokens']:,} output tokens); "
        f"{cost['cached_calls']} calls answered from the cache",
        markup=False,
    )
    faults = {k: v for k, v in s["faults"].items() if v}
    if faults:
        console.print("faults: " + ", ".join(f"{k} {v}" for k, v in faults.items()), markup=False)
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
