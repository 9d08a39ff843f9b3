"""Shared fixtures: database URLs for the store's tests; fake model provider servers."""

from __future__ import annotations

import compileall
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile cadsynth's sources once: the slow tests start `cads` as a process many times (and
    painter workers, Ray workers, `langgraph dev`), and where PYTHONDONTWRITEBYTECODE is set (as on
    CI's machines) each start compiled them again (7% of test_debate_run.py's time, when it ran
    `cads` as processes)."""
    for package in ("cadsynth", "agents", "graphs", "store"):
        compileall.compile_dir(REPO / package, quiet=1)


# The test server (trust auth). Each session works in a schema of its own, dropped at the end.
PG_BASE = os.environ.get("CADS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def _pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped on exit; skips if the server is down."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_BASE)
    conninfo = dict(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database, connect_timeout=3
    )
    if url.password:
        conninfo["password"] = url.password
    schema = f"cads_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(autocommit=True, **conninfo)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):  # CI starts the server: its absence there is a failure, not a skip
            pytest.fail(f"PostgreSQL not reachable at {url.host}:{url.port}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {url.host}:{url.port}: {exc}")
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        # A connection of its own: a test may have restarted the server meanwhile (test_db_outage).
        with psycopg.connect(autocommit=True, **conninfo) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, shared by the session."""
    with _pg_schema() as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL URL on a schema of the test's own, with no tables yet."""
    with _pg_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'cads.db'}"


# --- fake model providers ----------------------------------------------------------------------
# Real clients (ChatOpenAI, ChatGoogleGenerativeAI, the openai SDK) over HTTP to servers on
# 127.0.0.1: nothing is patched. A test sets `.responder` and `.faults` on the server it gets.

FAKE_OPENAI_KEY = "sk-fake-openai-0123456789"
FAKE_GEMINI_KEY = "g-fake-gemini-0123456789"


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A FakeOpenAI that requires FAKE_OPENAI_KEY, which is exported as CADS_TEST_OPENAI_KEY."""
    from cadsynth.fakes import FakeOpenAI

    monkeypatch.setenv("CADS_TEST_OPENAI_KEY", FAKE_OPENAI_KEY)
    with FakeOpenAI(api_key=FAKE_OPENAI_KEY) as server:
        yield server


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A FakeGemini that requires FAKE_GEMINI_KEY, which is exported as CADS_TEST_GEMINI_KEY."""
    from cadsynth.fakes import FakeGemini

    monkeypatch.setenv("CADS_TEST_GEMINI_KEY", FAKE_GEMINI_KEY)
    with FakeGemini(api_key=FAKE_GEMINI_KEY) as server:
        yield server


# --- a finished run to read back ---------------------------------------------------------------


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one finished simulated run, `small`: two lanes of three rounds (read it, never change it)."""
    from tests.helpers import cads

    work = tmp_path_factory.mktemp("small-run")
    cads("run", "--run-id", "small", "--lanes", "2", "--rounds", "3", "--target", "1000", "--seed", "5", cwd=work)
    return work
