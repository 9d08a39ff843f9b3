"""The typer app and what every command shares: the common options, reading the ledger, and the
one place an error becomes one line on stderr (`fail` inside a command, `main` around it)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cadsynth.config import RunConfig
    from cadsynth.store.ledger import Ledger

# Plain help (no rich boxes, no `<bool>` type column): it reads the same in a terminal and a log.
app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="`cads`: run a debate, and read what it produced."
)
console = Console(soft_wrap=True)  # long lines (commands to copy) are never broken
errors = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal

DEFAULT_DB = "sqlite:///cads.db"
DbOption = Annotated[str, typer.Option("--db", envvar="CADS_DB", help="Database URL (SQLite or PostgreSQL)")]
DataOption = Annotated[Path, typer.Option("--data", envvar="CADS_DATA", help="Folder for images")]
BudgetOption = Annotated[
    float | None, typer.Option("--budget", min=0.0, help="USD: stop at a round boundary before the run could pass it")
]
GraceOption = Annotated[
    float | None,
    typer.Option(
        "--grace", min=0.0, metavar="SECONDS",
        help="On SIGINT/SIGTERM, how long to wait for the calls in flight (default 30); a second signal stops at once",
    ),
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


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def checked(check: Callable[[ModuleType], None]) -> None:
    """Run one of `cadsynth.checks` (given the module, imported here on first use)."""
    from cadsynth import checks

    try:
        check(checks)
    except checks.BadInput as exc:
        fail(str(exc))


def check_keys(config: RunConfig) -> None:
    """Every missing key, one line per agent, before anything is called or written."""
    from cadsynth.agents.models import missing_keys

    problems = missing_keys(config)
    if problems:
        for line in problems:
            errors.print(f"error: {line}", markup=False, highlight=False)
        raise typer.Exit(2)


def load_run_config(config_path: Path | None) -> RunConfig:
    """The config (None: the built-in simulated panel) with its seed file read, or one line and exit 2."""
    from cadsynth.config import ConfigError, load_config
    from cadsynth.seeds import SeedError, load_seeds

    try:
        config = load_config(config_path)
        if config.seeds is not None:
            load_seeds(config.seeds)
    except (ConfigError, SeedError) as exc:
        fail(str(exc))
    return config


def check_writer(db: str, data: Path) -> None:
    checked(lambda checks: checks.database(db, create=True))
    checked(lambda checks: checks.data_folder(data))


# --- reading the ledger ------------------------------------------------------------------------


def read(db: str, query: Callable[[Ledger], Awaitable[Any]], *, mode: str = "read") -> Any:
    """Run one async ledger query and close the engine, turning known errors into one line.

    mode "read" creates and changes nothing; "write" (resume, replay) may upgrade an existing
    database's tables; "new" (run) may also create the database.
    """
    from cadsynth.store.ledger import Ledger, UnknownRunError
    from cadsynth.store.migrate import SchemaVersionError

    checked(lambda checks: checks.database(db, create=mode == "new"))

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


def require_run(db: str, run: str, mode: str = "read") -> dict[str, Any]:
    record = read(db, lambda ledger: ledger.run(run), mode=mode)
    if record is None:
        fail(f"no run {run!r} in this database; `cads runs` lists the runs")
    return dict(record)


def rounds_opened(db: str, run: str, lane: int | None = None) -> list[int]:
    """The rounds a run has opened; for a run with lanes, those every lane (or lane `lane`) has."""

    async def query(ledger: Ledger) -> list[int]:
        lanes = [r["id"] for r in await ledger.lanes(run)]
        members = lanes if lane is None else lanes[lane : lane + 1]
        opened = [{r for r, _ in await ledger.contexts(member)} for member in members or [run]]
        return sorted(set.intersection(*opened))

    return list(read(db, query))


def check_lane(db: str, run: str, lane: int | None) -> None:
    if lane is None:
        return
    count = len(read(db, lambda ledger: ledger.lanes(run)))
    if not 0 <= lane < count:
        has = f"lanes 0..{count - 1}" if count else "no lanes"
        fail(f"--lane {lane}: run {run!r} has {has}; pick one of those")


# --- the console script ------------------------------------------------------------------------


def _given(exc: Exception, args: list[str]) -> str:
    """The value the user typed for the option a usage error is about, as it was typed."""
    param = getattr(exc, "param", None)
    names = set(getattr(param, "opts", None) or [])
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


def invoke(args: list[str]) -> int:
    """Run the command `args` names and return its exit status; every error is one line on stderr.

    Usage errors come as one line rather than click's block; a bug too, its traceback on request.
    """
    # When the database goes away mid-write, psycopg warns of each pipeline it could not close, on
    # stderr (Python's last-resort handler); the store waits or fails with its own one line.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=_ray_flag(args), prog_name="cads", standalone_mode=False)
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
            given = _given(exc, args)
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
    return code if isinstance(code, int) else 0


def main() -> None:
    """The console script `cads`."""
    code = invoke(sys.argv[1:])
    # The command has written and closed everything. Python's last collection walks the whole heap
    # of LangChain, the openai SDK and SQLAlchemy (about 0.4 s here) and frees nothing that matters.
    gc.freeze()
    sys.exit(code)
