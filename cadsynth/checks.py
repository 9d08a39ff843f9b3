"""What a command checks before it writes anything: database URLs, folders and output paths.

Each check raises `BadInput` with one line that names the bad value and says what to do, so the CLI
can print it and exit 2 with nothing written. Readers (`runs`, `show`, `stats`, `export`) never
create a database; writers (`run`, `resume`, `replay`) may create a SQLite file in a folder that
exists.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from cadsynth.store.db import DatabaseURLError, normalize_url, pool_size
from cadsynth.store.patience import patience


class BadInput(ValueError):
    """One line for the user: the bad value and what to do about it."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _writable(folder: Path) -> str | None:
    """Why nothing can be written in `folder`, or None. Tries a throwaway file: root ignores modes."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or _first_line(exc)


def _file_can_go_in(folder: Path, given: str) -> None:
    if not folder.is_dir():
        raise BadInput(f"{given}: folder {folder} does not exist; create it first, or name another")
    why = _writable(folder)
    if why:
        raise BadInput(f"{given}: cannot write in {folder} ({why}); give a folder you can write to")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def database(url: str, *, create: bool, option: str = "--db") -> None:
    """The URL names a backend we support, and its database can be reached (and, to read, exists)."""
    try:
        normalize_url(url, asynchronous=True)
        patience()  # read only once the database is away: checked before it is needed
    except (DatabaseURLError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _sqlite(parsed.database or "", url, create=create, option=option)
    else:
        _postgresql(url, option)


def cluster_store(url: str, option: str = "--db") -> None:
    """Lanes on a Ray cluster write from many processes, maybe many machines: PostgreSQL only."""
    if make_url(url).get_backend_name() == "sqlite":
        raise BadInput(
            f"--ray with {option} {url!r}: lanes on a cluster write from many processes and machines at once, and a SQLite "
            f"file belongs to one machine and takes one writer at a time; use {option} postgresql+psycopg://USER@HOST/DB"
        )


def _sqlite(file: str, url: str, *, create: bool, option: str) -> None:
    if file in ("", ":memory:") or file.startswith("file:"):
        raise BadInput(f"{option} {url!r}: an in-memory SQLite database keeps nothing; use sqlite:///FILE")
    path = Path(file)
    if path.is_dir():
        raise BadInput(f"{option} {url!r}: {path} is a folder; name a database file, e.g. sqlite:///{path / 'cads.db'}")
    if path.exists():
        return
    if not create:
        raise BadInput(f"{option} {url!r}: no database at {path}; `cads run` creates one, or point {option} at yours")
    _file_can_go_in(path.absolute().parent, f"{option} {url!r}")


def _postgresql(url: str, option: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from cadsynth.store.db import sync_engine

    try:
        pool_size()
    except DatabaseURLError as exc:
        raise BadInput(str(exc)) from None
    shown = make_url(url).render_as_string(hide_password=True)
    # The store's own engine: a server that is only full is waited for, like every other connect.
    engine = sync_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, OSError) as exc:
        cause = _first_line(getattr(exc, "orig", None) or exc)
        raise BadInput(f"{option} {shown!r}: cannot connect ({cause}); start the server or fix {option}") from None
    finally:
        engine.dispose()


def data_folder(path: Path, option: str = "--data") -> None:
    """Images can be written under `path` (made on first use, so it need not exist yet)."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"{option} {str(path)!r} is a file, not a folder; give a folder for the images")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise BadInput(f"{option} {str(path)!r}: {existing} is a file, not a folder; give a folder for the images")
    why = _writable(existing)
    if why:
        raise BadInput(f"{option} {str(path)!r}: cannot write in {existing} ({why}); give a folder you can write to")


def output_file(path: Path, option: str = "--out", *, overwrite: bool = False) -> None:
    """`path` can be written: not a folder, in a folder that exists and takes files, new unless `overwrite`."""
    if path.is_dir():
        raise BadInput(f"{option} {str(path)!r} is a folder; name a file")
    output(path, option, overwrite=overwrite)


def output(path: Path, option: str = "--out", *, overwrite: bool = False) -> None:
    """`path` (a file or a folder) can be made in a folder that exists and takes files, new unless `overwrite`."""
    if os.path.lexists(path) and not overwrite:
        raise BadInput(f"{option} {str(path)!r} exists; pass --overwrite to replace it, or name another")
    _file_can_go_in(path.absolute().parent, f"{option} {str(path)!r}")


def round_number(round_: int, opened: list[int], run: str, *, option: str = "--round", least: int = 0) -> None:
    """`round_` is one of the run's rounds (from `least` on: a fork needs a round before it)."""
    allowed = [r for r in opened if r >= least]
    if round_ in allowed:
        return
    has = f"rounds {opened[0]}..{opened[-1]}" if opened else "no rounds yet"
    pick = f"pick {allowed[0]}..{allowed[-1]}" if allowed else f"it needs a round from {least} on, and it has none"
    raise BadInput(f"{option} {round_}: run {run!r} has {has}; {pick}")
