"""`cads run`, `resume` and `replay`: start a run, continue it, or fork it, and draw its progress."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cadsynth.cli.app import (
    DEFAULT_DB,
    LOCAL_RAY,
    BudgetOption,
    DataOption,
    DbOption,
    GraceOption,
    NoCacheOption,
    RayOption,
    RunArgument,
    check_keys,
    check_lane,
    check_writer,
    checked,
    console,
    errors,
    fail,
    load_run_config,
    read,
    require_run,
    rounds_opened,
)

BatchOption = Annotated[
    bool, typer.Option("--batch", metavar="", help="Send each phase's calls as provider batch jobs (half price, within 24 h)")
]
DetachOption = Annotated[
    bool, typer.Option("--detach", metavar="", help="Stop once the batch jobs are sent; `cads resume RUN` collects them")
]

if TYPE_CHECKING:
    from cadsynth.config import RunConfig
    from cadsynth.runner import Fork, Progress, Stop

STOPPED_BY_SIGNAL = 75  # EX_TEMPFAIL: stopped on a signal, its calls in flight recorded; `cads resume` continues


def _progress_view(p: Progress) -> Any:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", p.run)
    if p.lanes > 1:
        grid.add_row("lanes", f"{p.lanes} ({p.lanes_done} done)")
    grid.add_row("round", str(p.round))
    grid.add_row("phase", p.phase)
    for endpoint, (value, in_flight) in sorted(p.concurrency.items()):
        grid.add_row("concurrency", f"{endpoint}: {value} ({in_flight} in flight)")
    if p.database_away:
        grid.add_row("waiting", p.database_away)
    if p.batch_wait:
        grid.add_row("batch", p.batch_wait)
    counts = p.counts
    for name in ("kept", "adversarial", "discarded"):
        grid.add_row(name, str(counts[name]))
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
    checked(lambda checks: checks.cluster_store(db))
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--ray: Ray is not installed here; pip install 'cadsynth[ray]' (on the driver and every node)")
    from cadsynth.cluster import ClusterError, connect

    try:
        connect(ray.address)  # before anything is written: a cluster that is not there is bad input
    except ClusterError as exc:
        fail(f"--ray: {exc}")
    return ray


def advance(
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
    grace: float | None = None,
    detach: bool = False,
) -> bool:
    """Advance the run; True when it paused for a person's review, or (`detach`) stopped with its
    calls in provider batch jobs (exit 0: a pause, not a failure).

    SIGINT or SIGTERM stops it gracefully (`runner.Stop`: `grace` seconds at most, 30 unless given)
    with one line and exit status 75; a second signal stops it at once, exit status 128 + its
    number (130, 143).
    """
    from rich.live import Live

    from cadsynth.graphs.settings import Settings
    from cadsynth.runner import Progress, RunFailed, RunStateError, Stop, execute
    from cadsynth.store.ledger import LeaseError
    from cadsynth.store.patience import DatabaseUnavailable

    lanes_on = None
    if ray is not None:
        from cadsynth.cluster import lanes_on_ray

        lanes_on = lanes_on_ray(ray)
        data = data.absolute()  # workers in other processes (and machines) find the images by it
    settings = Settings(db_url=db, data_dir=str(data), cache=cache, detach=detach)
    latest = [Progress(run=run)]
    # Redrawn a few times a second from the latest figures, not on every step: a large run takes
    # hundreds of thousands of steps, and drawing each would cost more than the steps themselves.
    live = Live(get_renderable=lambda: _progress_view(latest[0]), console=console, refresh_per_second=4)

    def stop() -> None:
        live.stop()
        console.line()  # the last frame ends its line before the error is printed

    def observe(progress: Progress) -> None:
        latest[0] = progress

    stopping = Stop() if grace is None else Stop(grace)

    async def until_done_or_stopped() -> Progress:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():  # the one that hears signals (not so in some tests)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopping.ask, signum)  # removed when asyncio.run closes the loop
        return await execute(
            settings, run, config, fork=fork, budget=budget, on_update=observe, lanes_on=lanes_on, review=review,
            stop=stopping,
        )

    with live:
        try:
            progress = asyncio.run(until_done_or_stopped())
        except (LeaseError, RunStateError) as exc:
            stop()
            fail(str(exc))
        except (RunFailed, DatabaseUnavailable) as exc:
            stop()
            if os.environ.get("CADS_DEBUG"):
                console.print_exception()
            fail(f"run {run!r} failed: {exc}; fix it and `cads resume {run}`", code=1)
        except KeyboardInterrupt:
            stop()
            fail(f"interrupted; `cads resume {run}` continues the run", code=130)
        latest[0] = progress
    if progress.phase == "interrupted":
        _stopped_by_signal(run, stopping)
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
    if progress.phase == "waiting for batch":
        console.print(
            f"\nthe run's calls wait in provider batch jobs (`cads runs` lists them); collect them with: cads resume {run}",
            markup=False,
        )
    return bool(progress.waiting) or progress.phase == "waiting for batch"


def _stopped_by_signal(run: str, stop: Stop) -> None:
    """The one line a run stopped by a signal ends with, and its exit status."""

    def calls(n: int, verb: str) -> str:
        return f"{n} call{'s' * (n != 1)} in flight {'were' if n != 1 else 'was'} {verb}"

    at_once = stop.asked > 1
    said = f"stopped {'at once by a second signal' if at_once else 'by signal'}: {calls(stop.saved, 'saved')}"
    if stop.abandoned:
        after = "" if at_once else f" after the {stop.grace:g} s grace"
        said += f", {stop.abandoned} abandoned{after} (not recorded: resume makes them again)"
    errors.print(f"{said}; cads resume {run} continues", markup=False, highlight=False)
    raise typer.Exit(128 + (stop.signal or signal.SIGINT) if at_once else STOPPED_BY_SIGNAL)


def summarize(db: str, run_name: str) -> None:
    from cadsynth.report import summary as run_summary

    summary = read(db, lambda ledger: run_summary(ledger, run_name))
    console.print(
        f"\nkept {summary['kept']} samples ({summary['adversarial']} adversarial), discarded {summary['discarded']}, "
        f"{summary['model_calls']} model calls. Export with: cads export {run_name} --out {run_name}-data",
        markup=False,
    )


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
    if read(db, lambda ledger: ledger.run(run_name), mode="new") is not None:
        fail(f"--run-id {run_name!r}: that run already exists; pick another id or continue it with `cads resume {run_name}`")
    return run_name


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
    grace: GraceOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Print the calls, tokens and cost a real run would take; calls nothing")
    ] = False,
    batch: BatchOption = False,
    detach: DetachOption = False,
) -> None:
    """Synthesize a data set: rounds of propose, paint, critique, judge and adversary."""
    from cadsynth.config import ConfigError, parse_config

    # Everything is checked before anything is written.
    config = load_run_config(config_path)
    overrides = {"rounds": rounds, "target": target, "seed": seed, "lanes": lanes}
    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if no_adversary:
        update["adversary"] = False
    if batch:
        update["batch"] = True
    if update:
        try:
            config = parse_config({**config.model_dump(), **update}, "options (--rounds, --target, --seed, --lanes)")
        except ConfigError as exc:
            fail(str(exc))
    if detach and not config.batch:
        fail("--detach: the run does not batch; add --batch (or `batch: true` in the config)")
    if dry_run:
        _warn_unreachable_target(config)
        _dry_run(config)
        return
    check_keys(config)
    check_writer(db, data)
    on_ray = _on_ray(db, ray, config.ray.model_dump() if config.ray else None)
    if on_ray is not None:
        config = config.model_copy(update={"ray": on_ray})
    run_name = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{run_name}[/bold]")
    if not advance(db, data, not no_cache, run_name, config=config, budget=budget, ray=on_ray, grace=grace, detach=detach):
        summarize(db, run_name)


def _dry_run(config: RunConfig) -> None:
    from rich.table import Table

    from cadsynth.dryrun import estimate

    with console.status("playing the run with simulated stand-ins..."):
        est = estimate(config)
    batch = ("USD in batch",) if config.batch else ()
    table = Table("agent", "stands in for", "calls", "input tokens", "output tokens", "USD online", *batch, title="dry run (estimate)")
    for r in est.rows:
        price = f"{r['usd']:.4f}" if r["priced"] else "unpriced"
        in_batch = (f"{r['batch_usd']:.4f}" if r["priced"] else "unpriced",) if batch else ()
        table.add_row(
            r["agent"], f"{r['provider']} {r['model']}", str(r["calls"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", price,
            *in_batch,
        )
    t = est.total
    table.add_row(
        "total", "", str(t["calls"]), f"{t['input_tokens']:,}", f"{t['output_tokens']:,}", f"{t['usd']:.4f}",
        *((f"{t['batch_usd']:.4f}",) if batch else ()), style="bold",
    )
    console.print(table)
    console.print(
        f"{est.rounds} rounds, {est.proposals} proposals, {est.kept} kept, as played by simulated stand-ins with the "
        "real prompts and prices. Unpriced models count as free; add them under `prices:`.",
        markup=False,
    )


def resume(
    run_name: RunArgument,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    budget: BudgetOption = None,
    no_cache: NoCacheOption = False,
    ray: RayOption = None,
    grace: GraceOption = None,
    detach: DetachOption = False,
) -> None:
    """Continue an interrupted, failed or stopped run from its last checkpoint; finished calls are not
    made again, and calls waiting in batch jobs are collected, not sent again."""
    from cadsynth.config import RunConfig
    from cadsynth.store.ledger import WAITING_FOR_REVIEW

    record = require_run(db, run_name, mode="write")
    if record["status"] == "done":
        fail(f"run {run_name!r} has finished; `cads replay {run_name} --round N` forks it into a new run")
    if record["status"] == WAITING_FOR_REVIEW:
        fail(f"run {run_name!r} is waiting for review; `cads review {run_name}` decides its outcomes and continues it")
    stored = RunConfig.model_validate(record["config"])
    check_keys(stored)
    if detach and not stored.batch:
        fail(f"--detach: run {run_name!r} does not batch; only a run started with --batch waits for batch jobs")
    if record["status"] == "stopped" and record["budget_usd"] is not None and (budget or 0) <= record["budget_usd"]:
        fail(f"run {run_name!r} stopped at its budget of ${record['budget_usd']:.4f}; resume it with a higher --budget")
    check_writer(db, data)
    on_ray = _on_ray(db, ray, record["config"].get("ray"))
    if not advance(db, data, not no_cache, run_name, budget=budget, ray=on_ray, grace=grace, detach=detach):
        summarize(db, run_name)


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
    grace: GraceOption = None,
) -> None:
    """Fork a run (every lane, or one) before round N into a new run; the original is untouched."""
    from cadsynth.config import RunConfig
    from cadsynth.runner import Fork

    config = load_run_config(config_path) if config_path is not None else None
    parent = require_run(db, run_name, mode="write")
    check_lane(db, run_name, lane)
    # A fork shares the rounds before it, so round 0 cannot be forked (that is a new run).
    checked(lambda checks: checks.round_number(round_, rounds_opened(db, run_name, lane), run_name, least=1))
    check_keys(config or RunConfig.model_validate(parent["config"]))
    check_writer(db, data)
    new_run = _new_run_name(db, run_id)
    console.print(f"run id: [bold]{new_run}[/bold] (fork of {run_name} at round {round_})")
    fork = Fork(parent=run_name, round=round_, config=config, lane=lane)
    if not advance(db, data, not no_cache, new_run, fork=fork, budget=budget, grace=grace):
        summarize(db, new_run)

