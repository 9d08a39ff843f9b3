"""LangGraph's checkpointer conformance suite (base and extended capabilities) on our savers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.spec import (
    test_copy_thread,
    test_delete_for_runs,
    test_delete_thread,
    test_get_tuple,
    test_list,
    test_prune,
    test_put,
    test_put_writes,
)

from cadsynth.store import AsyncSqlSaver, SqlSaver, open_checkpointer, open_checkpointer_sync

# How many checks the suite has per capability, read from the suite itself.
EXPECTED = {
    "put": len(test_put.ALL_PUT_TESTS),
    "put_writes": len(test_put_writes.ALL_PUT_WRITES_TESTS),
    "get_tuple": len(test_get_tuple.ALL_GET_TUPLE_TESTS),
    "list": len(test_list.ALL_LIST_TESTS),
    "delete_thread": len(test_delete_thread.ALL_DELETE_THREAD_TESTS),
    "delete_for_runs": len(test_delete_for_runs.ALL_DELETE_FOR_RUNS_TESTS),
    "copy_thread": len(test_copy_thread.ALL_COPY_THREAD_TESTS),
    "prune": len(test_prune.ALL_PRUNE_TESTS),
}


async def _run_suite(name: str, url: str, kind: str) -> None:
    if kind == "async":

        async def factory():  # type: ignore[no-untyped-def]
            async with open_checkpointer(url) as saver:
                assert isinstance(saver, AsyncSqlSaver)
                yield saver

    else:

        async def factory():  # type: ignore[no-untyped-def]
            with open_checkpointer_sync(url) as saver:
                assert isinstance(saver, SqlSaver)
                yield saver

    registered = checkpointer_test(name=name)(factory)
    report = await validate(registered)
    summary = {
        cap: (r.tests_passed, r.tests_failed, r.failures) for cap, r in report.results.items()
    }
    assert report.passed_all(), f"{name} failed conformance:\n{json.dumps(report.to_dict(), indent=2)}"
    assert {c.value for c in ALL_CAPABILITIES} == {
        cap for cap, r in report.results.items() if r.detected
    }, f"{name}: capabilities not detected: {summary}"
    assert {cap: r[0] for cap, r in summary.items()} == EXPECTED, summary


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_conformance_sqlite(tmp_path: Path, kind: str) -> None:
    await _run_suite(f"{kind}-sqlite", f"sqlite:///{tmp_path / 'conformance.db'}", kind)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_conformance_postgres(pg_url: str, kind: str) -> None:
    await _run_suite(f"{kind}-postgres", pg_url, kind)
