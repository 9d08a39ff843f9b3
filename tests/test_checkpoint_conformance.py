"""LangGraph's checkpointer conformance suite (base and extended capabilities) on our savers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

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


class _Threaded(SqlSaver):
    """SqlSaver, whose async forms (the suite calls only those) run its sync ones in a thread."""

    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for found in await asyncio.to_thread(lambda: list(self.list(config, **kwargs))):
            yield found

    async def aput(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return await asyncio.to_thread(self.put, *args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        await asyncio.to_thread(self.put_writes, *args, **kwargs)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

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
                yield _Threaded(saver.engine)

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
