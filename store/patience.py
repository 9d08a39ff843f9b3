"""Riding out a database outage: every store operation is retried while the database is away.

A managed PostgreSQL restarts for maintenance or fails over; a SQLite file is locked by a backup
for a while. A run of hours should wait for its database, not fail for a few seconds of downtime.
Each store operation (a ledger write, a checkpoint, a cache lookup, a lease) is one unit that is
asked again, from its start, after a connection failure: its transaction was rolled back, or it
committed and was not told so, and every write of the store is idempotent (upserts, inserts of
new keys), so asking again never applies half of it or twice.

The waiting lasts up to the patience (`$CADS_DB_PATIENCE` seconds, default 300); past it the
operation raises `DatabaseUnavailable`, whose message is the run's one-line reason. A database
this process never reached is not waited for: that is a wrong URL or a server never started, and
says so at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import random
import sqlite3
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import exc as sa

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PATIENCE = 300.0
_FIRST_DELAY, _MAX_DELAY = 0.2, 5.0

# PostgreSQL error classes a retry cures: the connection broke (08), the server is shutting down,
# crashed or starting (57P01-57P03), it is full (53300), or the transaction lost a race (40001, 40P01).
_RETRY_STATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
# SQLite: a lock held past the busy timeout, a file briefly gone (a restore, a remount).
_RETRY_SQLITE = ("database is locked", "database table is locked", "unable to open database file")


class DatabaseUnavailable(RuntimeError):
    """The database stayed away longer than the patience: the run stops, resumable."""


def patience() -> float:
    """Seconds an operation waits for the database: $CADS_DB_PATIENCE, else 300."""
    value = os.environ.get("CADS_DB_PATIENCE", "")
    if not value:
        return DEFAULT_PATIENCE
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"CADS_DB_PATIENCE={value!r}: give the seconds to wait for the database, e.g. 300")
    return seconds


def transient(exc: BaseException) -> bool:
    """Whether asking again may succeed: the database was away, not the request wrong."""
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.OperationalError | sa.InterfaceError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        return any(words in str(orig) for words in _RETRY_SQLITE)
    state = getattr(orig, "sqlstate", None)
    if state is None:  # psycopg: no server answer at all (refused, reset, closed unexpectedly)
        return True
    return state.startswith(_RETRY_STATES)


@dataclass
class Outage:
    """What this process's store is waiting for, for the live display: since when, and why."""

    since: float | None = None  # time.monotonic() of the first failure, while one lasts
    error: str = ""
    waiting: int = 0  # operations waiting now
    # An operation waited its whole patience and nothing has been answered since: the ones after
    # it (a stopping run marking itself failed, letting go of its lease) do not wait again.
    gave_up: bool = False

    def describe(self) -> str | None:
        """`database unavailable for 12 s (waiting up to 300 s): <why>`, while one lasts."""
        if self.since is None:
            return None
        return (f"database unavailable for {time.monotonic() - self.since:.0f} s "
                f"(waiting up to {patience():.0f} s): {self.error}")


outage = Outage()  # one per process: its operations wait for the same database
_reached: set[str] = set()  # databases this process has been answered by
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("cads_db_patient", default=False)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return ((str(orig).strip().splitlines() or [type(orig).__name__])[0])[:200]


def _gave_up(exc: BaseException, waited: float) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database was unavailable for {max(waited, patience()):.0f} s, longer than CADS_DB_PATIENCE "
        f"({patience():.0f} s): {_first_line(exc)}"
    )


class _Waiting:
    """One operation's retries: backoff with jitter, up to the patience from its first failure."""

    def __init__(self, database: str):
        self.database = database
        self.started: float | None = None
        self.delay = _FIRST_DELAY

    def answered(self) -> None:
        _reached.add(self.database)
        outage.gave_up = False
        if self.started is not None:
            outage.waiting -= 1
            if outage.waiting == 0:
                outage.since = None

    def failed(self, exc: BaseException) -> float:
        """The pause before asking again; raises when this failure is not to be waited out."""
        if not transient(exc) or self.database not in _reached:
            raise exc
        now = time.monotonic()
        if outage.gave_up:
            raise _gave_up(exc, 0 if self.started is None else now - self.started) from exc
        if self.started is None:
            self.started = now
            outage.waiting += 1
            if outage.since is None:
                outage.since = now
        outage.error = _first_line(exc)
        if now - self.started >= patience():
            outage.waiting -= 1
            if outage.waiting == 0:
                outage.since = None
            outage.gave_up = True
            raise _gave_up(exc, now - self.started) from exc
        pause = self.delay * (1 + random.random())  # jitter: processes cut off together return apart
        self.delay = min(self.delay * 2, _MAX_DELAY)
        return pause


def _database(owner: Any) -> str:
    """The database an operation's owner (a ledger, a cache, a saver) uses, whatever the driver."""
    url = owner.engine.url
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def patient(op: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """An async store operation (a method of an object with `.engine`) that waits out an outage.

    Operations it calls are part of it: only the outermost one retries, so the patience is not
    multiplied by nesting."""

    @functools.wraps(op)
    async def waiting(*args: P.args, **kwargs: P.kwargs) -> T:
        if _inside.get():
            return await op(*args, **kwargs)
        token = _inside.set(True)
        try:
            retry = _Waiting(_database(args[0]))
            while True:
                try:
                    result = await op(*args, **kwargs)
                except Exception as exc:
                    await asyncio.sleep(retry.failed(exc))
                    continue
                retry.answered()
                return result
        finally:
            _inside.reset(token)

    waiting.__patient__ = True  # type: ignore[attr-defined]
    return waiting


def patient_sync(op: Callable[P, T]) -> Callable[P, T]:
    """`patient` for a blocking store operation (the sync checkpoint saver)."""

    @functools.wraps(op)
    def waiting(*args: P.args, **kwargs: P.kwargs) -> T:
        if _inside.get():
            return op(*args, **kwargs)
        token = _inside.set(True)
        try:
            retry = _Waiting(_database(args[0]))
            while True:
                try:
                    result = op(*args, **kwargs)
                except Exception as exc:
                    time.sleep(retry.failed(exc))
                    continue
                retry.answered()
                return result
        finally:
            _inside.reset(token)

    waiting.__patient__ = True  # type: ignore[attr-defined]
    return waiting
