"""`cads`: run a debate, and read what it produced.

Every command checks its paths, URLs, ids, rounds and options before it writes anything: a bad
value is one line on stderr that names it and says what to do, exit status 2. A run that fails
(an unreachable model endpoint, a rejected key, anything unexpected) is marked failed with its
one-line reason and exits 1. The heavy parts (LangGraph, the model clients) are imported inside
the commands that use them, so `cads --help` and the readers start at once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cadsynth.config import RunConfig
    from cadsynth.runner import Fork, Progress
    from cadsynth.store.ledger import Ledger

# Plain help (no rich boxes, no `<bool>` type column): it reads the same in a terminal and a log.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help=__doc__.split("\n\n")[0])
console = Console(soft_wrap=True)  # long lines (commands to copy) are never broken
errors = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal

DEFAULT_DB = "sqlite:///cads.db"
DbOption = Annotated[str, typer.Option("--db", envvar="CADS_DB", help="Database URL (SQLite or PostgreSQL)")]
DataOption = Annotated[Path, typer.Option("--data", envvar="CADS_DATA", help="Folder for images")]
BudgetOption = Annotated[
    float | None, typer.Option("--budget", min=0.0, help="USD: stop at a round boundary before the run could pass it")
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", metavar="", help="Ask the models again even for identical calls")
]
RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="A run id, as `cads runs` lists them")]
# `--ray` alone means "start a cluster here"; main() spells that as this value (see _ray_flag).
LOCAL_RAY = "local"
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray", metavar="[ADDRESS]",
        help="Run the lanes on a Ray cluster: auto, HOST:PORT or ray://HOST:PORT; alone, a cluster started here (PostgreSQL only)",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def _checked(check: Callable[[ModuleType], None]) -> None:
    """Run one of `cadsynth.checks` (given the module, imported here on first use)."""
    from cadsynth import checks

    try:
        check(checks)
    except checks.BadInput as exc:
        fail(str(exc))


def _read(db: str, query: Callable[[Ledger], Awaitable[Any]], *, mode: str = "read") -> Any:
    """Run one async ledger query and close the engine, turning known errors into one line.

    mode "read" creates and changes nothing; "write" (resume, replay) may upgrade an existing
    database's tables; "new" (run) may also create the database.
    """
    from cadsynth.store.ledger import Ledger, UnknownRunError
    from cadsynth.store.migrate import SchemaVersionError

    _checked(lambda checks: checks.database(db, create=mode == "new"))

    async def go() -> Any:
        ledger = Ledger.open(db, create=mode != "read")
        try:
            return await query(ledger)
        finally:
            await ledger.close()

    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(go())
    except (UnknownRunError, SchemaVersionError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:  # a database that is not what this cadsynth expects
        cause = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        fail(f"--db {db!r}: the database refused a read ({cause}); is it a cadsynth database of this version?")


def _require_run(db: str, run: str, mode: str = "read") -> dict[str, Any]:
    record = _read(db, lambda ledger: ledger.run(run), mode=mode)
    if record is None:
        fail(f"no run {run!r} in this database; `cads runs` lists the runs")
    return dict(record)


def _check_keys(config: RunConfig) -> None:
    """Every missing key, one line per agent, before anything is called or written."""
    from cadsynth.agents.models import missing_keys

    problems = missing_keys(config)
    if problems:
        for line in problems:
            errors.print(f"error: {line}", markup=False, highlight=False)
        raise typer.Exit(2)


def _progress_view(p: Progress) -> Any:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", p.run)
    if p.lanes > 1:
        grid.add_row("lanes", f"{p.lanes} ({p.lanes_done} done)")
    grid.add_row("round", str(p.round))
    grid.add_row("phase", p.phase)
    grid.add_row("kept", str(p.counts["keep"] + p.counts["adversarial"]))
    grid.add_row("adversarial", str(p.counts["adversarial"]))
    grid.add_row("discarded", str(p.counts["discard"]))
    return Panel(grid, title="cads run", expand=False)


def _on_ray(db: str, option: str | None, stored: dict[str, Any] | None) -> Any:
    """The cluster the lanes go to: `--ray`, else the run config's `ray:`; None to run them here."""
    from pydantic import ValidationError

    from cadsynth.config import RayConfig

    if option is None and not stored:
        return None
    given = {} if option is None else {"address": None if option == LOCAL_RAY else option}
    try:
        ray = RayConfig.model_validate({**(stored or {}), **given})
    except ValidationError as exc:  # only the option can be wrong: a stored config was validated
        fail(f"--ray {option!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")
    _checked(lambda checks: checks.cluster_store(db))
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--ray: Ray is not installed here; pip install 'cadsynth[ray]' (on the driver and every node)")
    from cadsynth.cluster import ClusterError, connect

    try:
        connect(ray.address)  # before anything is written: a cluster that is not there is bad input
    except ClusterError as exc:
        fail(f"--ray: {exc}")
    return ray


def _execute(
    db: str,
    data: Path,
    cache: bool,
    run: str,
    *,
    config: RunConfig | None = None,
    fork: Fork | None = None,
    budget: float | None = None,
    ray: Any = None,
    review: dict[str, Any] | None = None,
) -> bool:
    """Advance the run; True when it paused for a person's review (exit 0: a pause, not a failure)."""
    from rich.live import Live

    from cadsynth.graphs.settings import Settings
    from cadsynth.runner import Progress, RunFailed, RunStateError, execute
    from cadsynth.store.ledger import LeaseError

    lanes_on = None
    if ray is not None:
        from cadsynth.cluster import lanes_on_ray

        lanes_on = lanes_on_ray(ray)
        data = data.absolute()  # workers in other processes (and machines) find the images by it
    settings = Settings(db_url=db, data_dir=str(data), cache=cache)
    latest = [Progress(run=run)]
    # Redrawn a few times a second from the latest figures, not on every step: a large run takes
    # hundreds of thousands of steps, and drawing each would cost more than the steps themselves.
    live = Live(get_renderable=lambda: _progress_view(latest[0]), console=console, refresh_per_second=4)

    def stop() -> None:
        live.stop()
        console.line()  # the last frame ends its line before the error is printed

    def observe(progress: Progress) -> None:
        latest[0] = progress

    with live:
        try:
            progress = asyncio.run(
                execute(settings, run, config, fork=fork, budget=budget, on_update=observe, lanes_on=lanes_on, review=review)
            )
        except (LeaseError, RunStateError) as exc:
            stop()
            fail(str(exc))
        except RunFailed as exc:
            stop()
            if os.environ.get("CADS_DEBUG"):
                console.print_exception()
            fail(f"run {run!r} failed: {exc}; fix it and `cads resume {run}`", code=1)
        except KeyboardInterrupt:
            stop()
            fail(f"interrupted; `cads resume {run}` continues the run", code=130)
        latest[0] = progress
    if progress.stopped:
        why = progress.stopped
        console.print(
            f"\nstopped before round {why['round']}: spent ${why['spent_usd']:.4f} of the ${why['budget_usd']:.4f} budget, "
            f"and the last round cost ${why['next_round_usd']:.4f}. Continue with: cads resume {run} --budget USD",
            markup=False,
        )
    if progress.waiting:
        rounds = sorted({w["round"] for w in progress.waiting})
        where = f" in {len(progress.waiting)} lanes" if len(progress.waiting) > 1 else ""
        console.print(
            f"\nround {', '.join(map(str, rounds))} is waiting for review{where}: decide its outcomes with "
            f"cads review {run} (--accept-all, or --set ID=keep|discard|pool)",
            markup=False,
        )
    return bool(progress.waiting)


def _summary(db: str, run_name: str) -> None:
    from cadsynth.report import summary as run_summary

    summary = _read(db, lambda ledger: run_summary(ledger, run_name))
    console.print(
        f"\nkept {summary['kept']} samples ({summary['adversarial']} adversarial), discarded {summary['discarded']}, "
        f"{summary['model_calls']} model calls. Export with: cads export {run_name} --out {run_name}-data",
        markup=False,
    )


def _load(config_path: Path | None) -> RunConfig:
    from cadsynth.config import ConfigError, load_config
    from cadsynth.seeds import SeedError, load_seeds

    try:
        config = load_config(config_path)
        if config.seeds is not None:
            load_seeds(config.seeds)
    except (ConfigError, SeedError) as exc:
        fail(str(exc))
    return config


def _warn_unreachable_target(config: RunConfig) -> None:
    most = config.rounds * config.proposals_per_round * config.lanes  # rounds are per lane
    if most < config.target:
        lanes = f" x {config.lanes} lanes" if config.lanes > 1 else ""
        errors.print(
            f"warning: {config.rounds} rounds x {config.proposals_per_round} proposals a round{lanes} make at most "
            f"{most} samples, fewer than the target of {config.target}; raise rounds or proposals_per_agent",
            markup=False,
            highlight=False,
        )


def _new_run_name(db: str, run_id: str | None) -> str:
    from cadsynth.runner import new_run_id

    run_name = run_id or new_run_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", run_name):
        fail(f"--run-id {run_name!r}: use letters, digits, '.', '_' or '-' (at most 128, starting with a letter or digit)")
    if _read(db, lambda ledger: ledger.run(run_name), mode="new") is not None:
        fail(f"--run-id {run_name!r}: that run already exists; pick another id or continue it with `cads resume {run_name}`")
    return run_name


def _check_writer(db: str, data: Path) -> None:
    _checked(lambda checks: checks.database(db, create=True))
    _checked(lambda checks: checks.data_folder(data))


@app.command()
def run(
    config_path: Annotated[Path | None, typer.Argument(metavar="CONFIG.yaml", help="Panel config; none = simulated panel")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name for the run (default: generated)")] = None,
    rounds: Annotated[int | None, typer.Option(help="Override the config's rounds")] = None,
    target: Annotated[int | None, typer.Option(help="Stop once this many samples are kept")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed")] = None,
    lanes: Annotated[int | None, typer.Option(help="Independent debates side by side; the target is split")] = None,
    ray: RayOption = None,
    no_adversary: Annotated[bool, typer.Option("--no-adversary", metavar="", help="Never change the context (ablation)")] = False,
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Print the calls, tokens and cost a real run would take; calls nothing")
    ] = False,
) -> None:
    """Synthesize a data set: rounds of propose, paint, critique, judge and adversary."""
    from cadsynth.config import ConfigError, parse_config

    # Everything is checked before anything is written.
    config = _load(config_path)
    overrides = {"rounds": rounds, "target": target, "seed": seed, "lanes": lanes}
    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if no_adversary:
        update["adversary"] = False
    if update:
        try:
            config = parse_config({**config.model_dump(), **update}, "options (--rounds, --target, --seed, --lanes)")
        except ConfigError as exc:
            fail(str(exc))
    if dry_run:
        _warn_unreachable_target(config)
        _dry_run(config)
        return
    _check_keys(config)
    _check_writer(db, data)
    on_ray = _on_ray(db, ray, config.ray.model_dump() if config.ray else None)
    if on_ray is not None:
        config = config.model_copy(update={"ray": on_ray})
    run_name = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{run_name}[/bold]")
    if not _execute(db, data, not no_cache, run_name, config=config, budget=budget, ray=on_ray):
        _summary(db, run_name)


def _dry_run(config: RunConfig) -> None:
    from rich.table import Table

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
    run_name: RunArgument,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
    ray: RayOption = None,
) -> None:
    """Continue an interrupted, failed or stopped run from its last checkpoint; finished calls are not made again."""
    from cadsynth.config import RunConfig
    from cadsynth.store.ledger import WAITING_FOR_REVIEW

    record = _require_run(db, run_name, mode="write")
    if record["status"] == "done":
        fail(f"run {run_name!r} has finished; `cads replay {run_name} --round N` forks it into a new run")
    if record["status"] == WAITING_FOR_REVIEW:
        fail(f"run {run_name!r} is waiting for review; `cads review {run_name}` decides its outcomes and continues it")
    _check_keys(RunConfig.model_validate(record["config"]))
    if record["status"] == "stopped" and record["budget_usd"] is not None and (budget or 0) <= record["budget_usd"]:
        fail(f"run {run_name!r} stopped at its budget of ${record['budget_usd']:.4f}; resume it with a higher --budget")
    _check_writer(db, data)
    on_ray = _on_ray(db, ray, record["config"].get("ray"))
    if not _execute(db, data, not no_cache, run_name, budget=budget, ray=on_ray):
        _summary(db, run_name)


def _reviewer() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "unknown"


def _pairs(option: str, given: list[str]) -> dict[str, str]:
    """`ID=VALUE` items of a repeatable option, by id; a malformed one is a one-line error."""
    pairs = {}
    for item in given:
        pid, eq, value = item.partition("=")
        if not eq or not pid:
            fail(f"{option} {item!r}: write ID=VALUE, with ID as `cads review` lists it")
        pairs[pid] = value
    return pairs


def _show_waiting(waiting: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from cadsynth.graphs.review import AS_DECISION

    laned = len(waiting) > 1 or waiting[0]["lane"] is not None
    table = Table(title=f"waiting for review: round {', '.join(sorted({str(w['round']) for w in waiting}))}")
    for name in [*(["lane"] if laned else []), "problem", "question", "reference", "C/K", "outcome"]:
        table.add_column(name, no_wrap=name in ("problem", "outcome"))
    for w in waiting:
        for p in w["problems"]:
            question = p["question"] or ""
            score = "-" if p["score"] is None else f"{p['score']}/{p['judges']}"
            outcome = AS_DECISION.get(p["outcome"], p["outcome"])
            table.add_row(*([str(w["lane"])] if laned else []), p["id"], question[:70] + ("…" if len(question) > 70 else ""),
                          str(p["reference_answer"] or ""), score, outcome)
        if w.get("error"):
            console.print(f"lane {w['lane']}: an earlier answer was refused: {w['error']}", markup=False)
    console.print(table)


def _ask_decisions(waiting: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """At a terminal: each judged problem's outcome (Enter keeps it) and a note when it changes."""
    from rich.prompt import Prompt

    from cadsynth.graphs.review import AS_DECISION, reviewable

    outcomes, notes = {}, {}
    for w in waiting:
        for p in reviewable(w):
            computed = AS_DECISION[p["outcome"]]
            chosen = Prompt.ask(f"{p['id']}", choices=["keep", "discard", "pool"], default=computed, console=console)
            if chosen != computed:
                outcomes[p["id"]] = chosen
                note = Prompt.ask("  note (optional)", default="", console=console)
                if note:
                    notes[p["id"]] = note
    return outcomes, notes


@app.command()
def review(
    run_name: RunArgument,
    accept_all: Annotated[bool, typer.Option("--accept-all", metavar="", help="Keep every computed outcome")] = False,
    decide: Annotated[
        list[str] | None, typer.Option("--set", metavar="ID=OUTCOME", help="Decide a problem: keep, discard or pool (repeatable)")
    ] = None,
    notes: Annotated[list[str] | None, typer.Option("--note", metavar="ID=TEXT", help="A note on a problem's decision (repeatable)")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Who decides, as the ledger records it (default: the OS user)")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    no_cache: NoCacheOption = False,
) -> None:
    """Decide the outcomes of a round waiting for review (`review: true`), then continue the run."""
    from cadsynth.config import RunConfig
    from cadsynth.graphs.review import AS_DECISION, ReviewError, check
    from cadsynth.runner import waiting_for_review
    from cadsynth.store.ledger import WAITING_FOR_REVIEW, shown_status

    record = _require_run(db, run_name, mode="write")
    if record["status"] != WAITING_FOR_REVIEW:
        fail(f"run {run_name!r} is not waiting for review (it is {shown_status(record)}); only a run with `review: true` pauses for one")
    if accept_all and decide:
        fail(f"--accept-all with --set {decide[0]!r}: accept all, or change some, not both")
    _check_keys(RunConfig.model_validate(record["config"]))
    _check_writer(db, data)
    waiting = _read(db, lambda ledger: waiting_for_review(ledger, run_name), mode="write")
    if not waiting:
        # Its process stopped between marking the run and saving the pause: run it up to the pause.
        console.print(f"run {run_name} has no round waiting in its checkpoints yet; continuing it to its pause", markup=False)
        if not _execute(db, data, not no_cache, run_name):
            _summary(db, run_name)
        return
    outcomes, noted = _pairs("--set", decide or []), _pairs("--note", notes or [])
    asked = not (accept_all or outcomes or noted)
    if asked:
        if not sys.stdin.isatty():
            fail("say what to decide: --accept-all, or --set ID=keep|discard|pool (and --note ID=TEXT)")
        _show_waiting(waiting)
        outcomes, noted = _ask_decisions(waiting)
    lane_of = {p["id"]: w["run"] for w in waiting for p in w["problems"]}
    computed = {p["id"]: p["outcome"] for w in waiting for p in w["problems"]}
    answers: dict[str, Any] = {w["run"]: {"reviewer": _reviewer() if reviewer is None else reviewer, "decisions": {}} for w in waiting}
    for pid in [*outcomes, *noted]:
        if pid not in lane_of:
            option = "--set" if pid in outcomes else "--note"
            fail(f"{option} {pid!r}: no such problem waits for review in run {run_name!r}; the table above lists them")
        # A note alone keeps the computed outcome and records why.
        outcome = outcomes.get(pid, AS_DECISION.get(computed[pid], computed[pid]))
        answers[lane_of[pid]]["decisions"][pid] = {"outcome": outcome, "note": noted.get(pid)}
    for w in waiting:  # the graph checks the same way: nothing is sent unless every lane's answer holds
        try:
            check(answers[w["run"]], w)
        except ReviewError as exc:
            fail(str(exc))
    if not asked:
        _show_waiting(waiting)  # what was decided on, as a record in the terminal
    if not _execute(db, data, not no_cache, run_name, review=answers):
        _summary(db, run_name)


def _rounds_opened(db: str, run: str, lane: int | None = None) -> list[int]:
    """The rounds a run has opened; for a run with lanes, those every lane (or lane `lane`) has."""

    async def query(ledger: Ledger) -> list[int]:
        lanes = [r["id"] for r in await ledger.lanes(run)]
        members = lanes if lane is None else lanes[lane : lane + 1]
        opened = [{r for r, _ in await ledger.contexts(member)} for member in members or [run]]
        return sorted(set.intersection(*opened))

    return list(_read(db, query))


def _check_lane(db: str, run: str, lane: int | None) -> None:
    if lane is None:
        return
    count = len(_read(db, lambda ledger: ledger.lanes(run)))
    if not 0 <= lane < count:
        has = f"lanes 0..{count - 1}" if count else "no lanes"
        fail(f"--lane {lane}: run {run!r} has {has}; pick one of those")


@app.command()
def replay(
    run_name: RunArgument,
    round_: Annotated[int, typer.Option("--round", help="Fork at the checkpoint before this round (1 or later)")],
    config_path: Annotated[Path | None, typer.Option("--config", help="Another panel config for the fork")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name for the new run (default: generated)")] = None,
    lane: Annotated[int | None, typer.Option("--lane", help="Fork only this lane, into a run of its own")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Fork a run (every lane, or one) before round N into a new run; the original is untouched."""
    from cadsynth.config import RunConfig
    from cadsynth.runner import Fork

    config = _load(config_path) if config_path is not None else None
    parent = _require_run(db, run_name, mode="write")
    _check_lane(db, run_name, lane)
    # A fork shares the rounds before it, so round 0 cannot be forked (that is a new run).
    _checked(lambda checks: checks.round_number(round_, _rounds_opened(db, run_name, lane), run_name, least=1))
    _check_keys(config or RunConfig.model_validate(parent["config"]))
    _check_writer(db, data)
    new_run = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{new_run}[/bold] (fork of {run_name} at round {round_})")
    fork = Fork(parent=run_name, round=round_, config=config, lane=lane)
    if not _execute(db, data, not no_cache, new_run, fork=fork, budget=budget):
        _summary(db, new_run)


def _status_note(record: dict[str, Any], status: str) -> str:
    lanes = record["config"].get("lanes", 1) if record.get("lane_of") is None else 1
    note = _status_reason(record, status)
    return f"{lanes} lanes; {note}" if lanes > 1 and note else f"{lanes} lanes" if lanes > 1 else note


def _status_reason(record: dict[str, Any], status: str) -> str:
    if status == "failed":
        return str(record.get("reason") or "")
    if status == "interrupted":
        return f"its process is gone; `cads resume {record['id']}` continues it"
    if status == "stopped":
        return f"at its budget; `cads resume {record['id']} --budget USD`"
    if status == "waiting for review":
        return f"`cads review {record['id']}` decides the round's outcomes and continues it"
    return ""


@app.command()
def runs(db: DbOption = DEFAULT_DB) -> None:
    """List the runs in the database, with their status (and why a run failed or stopped)."""
    from rich.table import Table

    from cadsynth.store.ledger import shown_status

    rows = _read(db, lambda ledger: ledger.runs())
    headers = ("run", "status", "parent", "seed", "created")
    cells = []
    for r in rows:
        status = shown_status(r)
        parent = f"{r['parent']}@{r['fork_round']}" if r["parent"] else ""
        cells.append((r["id"], status, parent, str(r["seed"]), str(r["created_at"])[:19], _status_note(r, status)))
    # Ids are what people copy, and the status is what they came for: neither is ever wrapped or
    # cut. A terminal too narrow for them gets a wider table (its lines wrap, the cells do not).
    table = Table()
    for name in headers:
        table.add_column(name, no_wrap=True)
    table.add_column("note", min_width=20)
    for row in cells:
        table.add_row(*row)
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(headers)]
    needed = sum(widths) + 20 + 3 * (len(headers) + 1) + 1  # cells, note, padding and rules
    (console if needed <= console.width else Console(width=needed)).print(table)


@app.command()
def show(
    run_name: RunArgument,
    round_: Annotated[int, typer.Option("--round", help="Which round's debate to show")] = 0,
    lane: Annotated[int | None, typer.Option("--lane", help="Only this lane (default: every lane)")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """The debate transcript of one round: proposals, critiques, judges' answers, consensus, context."""
    from cadsynth.report import stats, transcript
    from cadsynth.store.ledger import shown_status

    record = _require_run(db, run_name)
    _check_lane(db, run_name, lane)
    _checked(lambda checks: checks.round_number(round_, _rounds_opened(db, run_name, lane), run_name))
    status = shown_status(record)
    header = f"run {run_name}  status {status}  round {round_}"
    if record["parent"]:
        header += f"  forked from {record['parent']} at round {record['fork_round']}"
    console.print(header, markup=False)
    note = _status_note(record, status)
    if note:
        console.print(f"{status}: {note}", markup=False)
    lanes = _read(db, lambda ledger: ledger.lanes(run_name))
    if lanes:
        for row in _read(db, lambda ledger: stats(ledger, run_name))["lanes"]:
            console.print(
                f"lane {row['lane']}: {row['run']} {row['status']}, {row['rounds']} rounds, {row['proposals']} proposals, "
                f"{row['kept']} kept ({row['adversarial']} adversarial)",
                markup=False,
            )
    members = [r["id"] for r in lanes] if lanes else [run_name]
    for member in members if lane is None else members[lane : lane + 1]:
        if lanes:
            console.rule(f"lane {member}", characters="=")
        _print_transcript(_read(db, lambda ledger: transcript(ledger, member, round_)))


def _print_transcript(t: dict[str, Any]) -> None:
    if t["forks"]:
        console.print(f"forks: {', '.join(t['forks'])}", markup=False)
    if t["context_before"] is not None:
        ctx = t["context_before"]
        console.print(f"\ncontext v{ctx.version} difficulty {ctx.difficulty_target:.2f}: {ctx.guidance}", markup=False)
    for p in t["proposals"]:
        verdict = t["consensus"].get(p.id)
        console.rule(p.id)
        console.print(f"{p.strategy}; {', '.join(p.capabilities)}; difficulty {p.difficulty:.2f}; revision {p.revision}", markup=False)
        console.print(f"Q: {p.question}", markup=False)
        if p.choices:
            console.print("   " + "  ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(p.choices)), markup=False)
        console.print(f"reference: {p.reference_answer}", markup=False)
        for c in t["critiques"]:
            if c.proposal == p.id:
                check = " (recheck)" if c.recheck else ""
                console.print(f"  critic {c.critic}{check}: {c.verdict} {'; '.join(c.issues)}", markup=False)
        for j in t["judgments"]:
            if j.proposal == p.id:
                mark = "-" if j.abstained else ("=" if j.agrees else "x")
                console.print(f"  judge {j.judge} [{mark}] {j.answer} (confidence {j.confidence:.2f})", markup=False)
        if verdict is None:
            console.print("consensus: pending", markup=False)
        elif verdict.score is None:
            why = {"text_answerable": f"a blind judge answered {verdict.blind_answer!r} without the image",
                   "inconsistent": "image, question and reference still conflict after a revision",
                   "unpainted": "no image"}.get(verdict.reason or "", "dropped by the critics")
            console.print(f"consensus: none ({why}); outcome {verdict.outcome}", markup=False)
        else:
            console.print(f"consensus: C={verdict.score} of K={verdict.judges} judges; outcome {verdict.outcome}", markup=False)
    if t["context_after"] is not None:
        ctx = t["context_after"]
        console.print(f"\nadversary -> context v{ctx.version} difficulty {ctx.difficulty_target:.2f}", markup=False)
        console.print(f"reflection: {ctx.reflection}\nguidance: {ctx.guidance}", markup=False)


@app.command("stats")
def stats_cmd(
    run_name: RunArgument,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="One JSON object for scripts")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Counts, per-round figures and (for simulated runs) how accurate the kept data really is."""
    from rich.table import Table

    from cadsynth.report import stats

    _require_run(db, run_name)
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
    if s.get("reason"):
        console.print(f"failed: {s['reason']}", markup=False)
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
    if s.get("judges"):
        console.print(
            "judges' estimated accuracy: "
            + ", ".join(f"{name} {j['estimated_accuracy']:.1%} ({j['judged']} judged)" for name, j in s["judges"].items()),
            markup=False,
        )
    for gate, g in s.get("gates", {}).items():
        if g["on"] or g["removed"] or g["calls"]:
            sent = f", {g['sent_back']} sent back for revision" if "sent_back" in g else ""
            console.print(
                f"gate {gate} ({'on' if g['on'] else 'off'}): {g['removed']} problems removed{sent}, "
                f"{g['calls']} calls, ${g['usd']:.4f}",
                markup=False,
            )
    if s.get("gates", {}).get("near_duplicates", {}).get("on"):
        console.print(f"near-duplicates: {s['duplicates_removed']} kept samples removed", markup=False)
    if "truth" in s:
        truth = s["truth"]
        console.print(
            f"simulated truth: {truth['proposal_correct_rate']:.1%} of proposals correct, "
            f"{(truth['kept_correct_rate'] or 0):.1%} of kept samples correct",
            markup=False,
        )
        if truth.get("kept_text_answerable_rate") is not None:
            console.print(
                f"simulated truth of kept samples: {truth['kept_text_answerable_rate']:.1%} answerable from the text, "
                f"{truth['kept_conflict_rate']:.1%} with an image that contradicts the question, "
                f"{truth['kept_duplicate_pairs']} near-duplicate pairs",
                markup=False,
            )


FORMAT_HELP = "jsonl (with provenance), llava, sharegpt (LLaMA-Factory), parquet or hf (a `datasets` folder)"


@app.command()
def export(
    run_name: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder to write: the data and its images, movable as a whole")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "jsonl",
    include: Annotated[
        str, typer.Option("--include", help="kept (C >= 1), adversarial (1 <= C <= K-1) or all (every judged problem)")
    ] = "kept",
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an earlier export at --out")] = False,
    license_id: Annotated[
        str, typer.Option("--license", help="Licence id for the dataset card of parquet and hf (e.g. cc-by-4.0)")
    ] = "other",
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", metavar="REPO", help="parquet or hf: also upload to this Hub data set")
    ] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Write a run's samples as a folder a fine-tuning framework loads, images beside them."""
    from cadsynth import exports
    from cadsynth.samples import INCLUDE, MissingImagesError, require_images
    from cadsynth.store.blobs import BlobStore

    if fmt not in exports.FORMATS:
        fail(f"--format {fmt!r} is not one we write; use one of {', '.join(exports.FORMATS)}")
    if include not in INCLUDE:
        fail(f"--include {include!r}: use one of {', '.join(INCLUDE)}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,63}", license_id):
        fail(f"--license {license_id!r}: give a Hub licence id in lower case, e.g. cc-by-4.0, apache-2.0 or other")
    token = None
    if push_to_hub is not None:
        if fmt not in exports.HUB_FORMATS:
            fail(f"--push-to-hub {push_to_hub!r}: the Hub takes --format parquet or hf, not {fmt}")
        why = exports.check_repo(push_to_hub)
        if why:
            fail(f"--push-to-hub {push_to_hub!r} is not a repository id ({why}); give NAME or OWNER/NAME")
        token = exports.hub_token()
        if not token:
            fail(f"--push-to-hub {push_to_hub!r}: no Hugging Face token; set HF_TOKEN or run `hf auth login`, then try again")
    _checked(lambda checks: checks.output(out, overwrite=overwrite))
    why = exports.not_an_export(out)
    if why is not None:
        fail(f"--out {str(out)!r} {why}; name another folder")
    _require_run(db, run_name)
    found = _read(db, lambda ledger: exports.gather(ledger, run_name, include, card=fmt in exports.HUB_FORMATS))
    blobs = BlobStore(data)
    try:
        require_images(found.chosen, blobs)
    except MissingImagesError as exc:
        fail(f"--data {str(data)!r}: {exc}")
    n = exports.write(found, fmt, out, blobs, overwrite=overwrite, license_id=license_id)
    console.print(f"wrote {n} samples to {out} ({fmt})", markup=False)
    if push_to_hub is not None and token is not None:
        try:
            url = exports.push(out, fmt, push_to_hub, token)
        except Exception as exc:  # the network or the Hub: the export itself is done and stays
            fail(f"--push-to-hub {push_to_hub!r}: the upload failed ({_first_line(exc)}); the export is at {out}", code=1)
        console.print(f"pushed to {url}", markup=False)


@app.command()
def report(
    run_name: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write: one page, no network needed to open it")],
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace an existing file at --out")] = False,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
) -> None:
    """Write a page to browse a run: summary, plots per round, the context's changes, every sample."""
    from cadsynth import run_report
    from cadsynth.samples import MissingImagesError, require_images
    from cadsynth.store.blobs import BlobStore

    _checked(lambda checks: checks.output_file(out, overwrite=overwrite))
    if out.exists() and not run_report.is_report(out):
        fail(f"--out {str(out)!r} is not a cadsynth report, and only one is replaced; name another file")
    _require_run(db, run_name)
    gathered = _read(db, lambda ledger: run_report.gather(ledger, run_name))
    blobs = BlobStore(data)
    try:
        require_images(gathered.samples, blobs)
    except MissingImagesError as exc:
        fail(f"--data {str(data)!r}: {exc}")
    size = run_report.write(gathered, blobs, out)
    console.print(f"wrote {out} ({size / 2**20:.1f} MiB, {len(gathered.samples)} samples)", markup=False)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


STUDIO_GRAPH = "cads"  # the graph's name in langgraph.json


@app.command()
def studio(
    run_name: RunArgument,
    url: Annotated[str, typer.Option("--url", help="The LangGraph server (`langgraph dev` serves on port 2024)")] = "http://127.0.0.1:2024",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Open a run in LangGraph Studio: register its thread (one per lane) with a running `langgraph dev`."""
    from cadsynth.store import thread_id

    _require_run(db, run_name)
    lanes = _read(db, lambda ledger: ledger.lanes(run_name))
    members = [(r["id"], r["lane"]) for r in lanes] if lanes else [(run_name, None)]

    async def register() -> list[str]:
        import httpx
        from langgraph_sdk import get_client
        from langgraph_sdk.errors import APIConnectionError, APIStatusError

        client = get_client(url=url)
        problems = []
        try:
            for member, lane in members:
                # The server keeps its own list of threads; the checkpoints are already in the database.
                await client.threads.create(thread_id=thread_id(member), graph_id=STUDIO_GRAPH, if_exists="do_nothing",
                                            metadata={"run": run_name, "lane": lane})
                values = (await client.threads.get_state(thread_id(member)))["values"]
                if not isinstance(values, dict) or values.get("run") != member:
                    problems.append(member)
        except (httpx.TransportError, APIConnectionError):
            fail(f"--url {url!r}: no LangGraph server answers there; start one with `langgraph dev` in the project folder")
        except (httpx.HTTPStatusError, APIStatusError) as exc:
            fail(f"--url {url!r}: the server refused the thread ({str(exc).splitlines()[0]}); is it serving this project's langgraph.json?")
        return problems

    unseen = asyncio.run(register())
    if unseen:
        fail(f"the server at {url} does not see run {unseen[0]!r}'s checkpoints; start `langgraph dev` with CADS_DB={db}")
    for member, _ in members:
        console.print(f"{member}: thread {thread_id(member)}", markup=False)


def _given(exc: Exception) -> str:
    """The value the user typed for the option a usage error is about, as it was typed."""
    param = getattr(exc, "param", None)
    names = set(getattr(param, "opts", None) or [])
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            return f" {(value if eq else args[i + 1] if i + 1 < len(args) else '')!r}"
    return ""


def _ray_flag(args: list[str]) -> list[str]:
    """`--ray` with no address (last, or before another option or the config file) starts a cluster here."""
    out = list(args)
    for i, arg in enumerate(out):
        following = out[i + 1] if i + 1 < len(out) else None
        if arg == "--ray" and (following is None or following.startswith("-") or following.endswith((".yaml", ".yml"))):
            out[i] = f"--ray={LOCAL_RAY}"
    return out


def main() -> None:
    """The console script: typer's app, with usage errors as one line rather than click's block."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=_ray_flag(sys.argv[1:]), prog_name="cads", standalone_mode=False)
    except typer.Abort:
        code = 1
    except typer.TyperException as exc:
        message = exc.format_message()
        if "\n" in message:  # `cads` alone: the message is the help text
            console.print(message, markup=False, highlight=False)
        else:
            ctx = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
            message = message.rstrip(".")
            given = _given(exc)
            if given:  # name the value itself, not only the option
                name = "/".join(getattr(getattr(exc, "param", None), "opts", []))
                message = f"{name}{given}: {message.split(': ', 1)[-1]}"
            errors.print(f"error: {where}{message}{hint}", markup=False, highlight=False)
        code = exc.exit_code if exc.exit_code else 2
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("CADS_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        errors.print(f"error: {type(exc).__name__}: {first} (a bug in cadsynth: CADS_DEBUG=1 shows where)", markup=False)
        code = 1
    # The command has written and closed everything. Python's last collection walks the whole heap
    # of LangChain, the openai SDK and SQLAlchemy (about 0.4 s here) and frees nothing that matters.
    gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
