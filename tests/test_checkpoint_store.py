"""The SQL checkpoint saver under real LangGraph graphs, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections import Counter
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from sqlalchemy import create_engine, func, select, text, update

from cadsynth.store import (
    AsyncSqlSaver,
    RoundThinningSaver,
    SchemaVersionError,
    open_checkpointer,
    open_checkpointer_sync,
)
from cadsynth.store.db import sync_engine
from cadsynth.store.schema import (
    SCHEMA_VERSION,
    checkpoint_blobs,
    checkpoint_writes,
    checkpoints,
    schema_info,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}


# --- a fan-out graph whose one parallel task fails once ------------------------------------------


class FanState(TypedDict, total=False):
    items: list[str]
    results: Annotated[list[str], operator.add]
    done: str


def _fan_graph(calls: Counter[str], fail: set[str], *, use_async: bool) -> StateGraph:
    def fan_out(state: FanState) -> list[Send]:
        return [Send("work", {"item": i}) for i in state["items"]]

    def record(item: str) -> dict[str, Any]:
        calls[item] += 1
        if item in fail:
            fail.discard(item)  # fails the first time only
            raise RuntimeError(f"{item} broke")
        return {"results": [item.upper()]}

    async def awork(arg: dict[str, str]) -> dict[str, Any]:
        if arg["item"] == "bad":
            await asyncio.sleep(0.05)  # let the siblings finish (and save their writes) first
        return record(arg["item"])

    def work(arg: dict[str, str]) -> dict[str, Any]:
        if arg["item"] == "bad":
            import time

            time.sleep(0.05)
        return record(arg["item"])

    def join(state: FanState) -> dict[str, Any]:
        calls["join"] += 1
        return {"done": ",".join(sorted(state["results"]))}

    builder = StateGraph(FanState)
    builder.add_node("work", awork if use_async else work)
    builder.add_node("join", join)
    builder.add_conditional_edges(START, fan_out, ["work"])
    builder.add_edge("work", "join")
    builder.add_edge("join", END)
    return builder


ITEMS = ["a", "b", "c", "d", "bad"]


async def test_resume_reruns_only_the_failed_task_async(db_url: str) -> None:
    calls: Counter[str] = Counter()
    async with open_checkpointer(db_url) as saver:
        graph = _fan_graph(calls, {"bad"}, use_async=True).compile(checkpointer=saver)
        config = _thread()
        with pytest.raises(RuntimeError, match="bad broke"):
            await graph.ainvoke({"items": ITEMS}, config)
        # The siblings' writes and the error are pending on the checkpoint the step started from.
        latest = await saver.aget_tuple(config)
        assert latest is not None
        channels = Counter(channel for _, channel, _ in latest.pending_writes or [])
        assert channels["results"] == 4 and channels["__error__"] == 1
        out = await graph.ainvoke(None, config)
    assert out["done"] == "A,B,BAD,C,D"
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 1, "bad": 2, "join": 1}


def test_resume_reruns_only_the_failed_task_sync(db_url: str) -> None:
    calls: Counter[str] = Counter()
    with open_checkpointer_sync(db_url) as saver:
        graph = _fan_graph(calls, {"bad"}, use_async=False).compile(checkpointer=saver)
        config = _thread()
        with pytest.raises(RuntimeError, match="bad broke"):
            graph.invoke({"items": ITEMS}, config)
        out = graph.invoke(None, config)
    assert out["done"] == "A,B,BAD,C,D"
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 1, "bad": 2, "join": 1}


async def test_state_history_order(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        graph = _fan_graph(Counter(), set(), use_async=True).compile(checkpointer=saver)
        config = _thread()
        await graph.ainvoke({"items": ["x", "y"]}, config)
        history = [s async for s in graph.aget_state_history(config)]
        # input, after fan-out (work x2), after join: newest first, each the child of the next
        assert [s.metadata["step"] for s in history] == [2, 1, 0, -1]
        assert [s.metadata["source"] for s in history] == ["loop", "loop", "loop", "input"]
        for child, parent in zip(history, history[1:]):
            assert child.parent_config == parent.config
        assert history[-1].parent_config is None
        assert history[0].values["done"] == "X,Y"
        assert (await graph.aget_state(config)).config == history[0].config
        # limit / before / filter go through the saver's list
        assert [s.config for s in [s async for s in graph.aget_state_history(config, limit=2)]] == [
            h.config for h in history[:2]
        ]
        older = [s async for s in graph.aget_state_history(config, before=history[1].config)]
        assert [s.config for s in older] == [h.config for h in history[2:]]
        inputs = [s async for s in graph.aget_state_history(config, filter={"source": "input"})]
        assert [s.config for s in inputs] == [history[-1].config]


async def test_copy_thread_is_independent(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        graph = _fan_graph(Counter(), set(), use_async=True).compile(checkpointer=saver)
        source, target = _thread(), _thread()
        await graph.ainvoke({"items": ["p", "q"]}, source)
        await saver.acopy_thread(source["configurable"]["thread_id"], target["configurable"]["thread_id"])

        src_hist = [s async for s in graph.aget_state_history(source)]
        dst_hist = [s async for s in graph.aget_state_history(target)]
        assert [s.values for s in dst_hist] == [s.values for s in src_hist]
        assert [s.config["configurable"]["checkpoint_id"] for s in dst_hist] == [
            s.config["configurable"]["checkpoint_id"] for s in src_hist
        ]

        # Changing the copy leaves the source alone, and deleting the source leaves the copy whole.
        await graph.aupdate_state(target, {"done": "changed"})
        assert (await graph.aget_state(target)).values["done"] == "changed"
        assert (await graph.aget_state(source)).values["done"] == "P,Q"
        await saver.adelete_thread(source["configurable"]["thread_id"])
        assert await saver.aget_tuple(source) is None
        copied = await graph.aget_state(target)
        assert copied.values == {"items": ["p", "q"], "results": ["P", "Q"], "done": "changed"}
        assert len([s async for s in graph.aget_state_history(target)]) == len(src_hist) + 1


# --- a large value written once costs nothing on later steps -------------------------------------


class BigState(TypedDict, total=False):
    big: str
    n: int


def _big_graph() -> StateGraph:
    builder = StateGraph(BigState)
    builder.add_node("load", lambda s: {"big": "x" * 1_000_000, "n": 0})
    builder.add_node("step", lambda s: {"n": s["n"] + 1})
    builder.add_edge(START, "load")
    builder.add_edge("load", "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < 5 else END, ["step", END])
    return builder


def _stored_bytes(url: str, thread_id: str) -> dict[str, int]:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            cp = conn.execute(
                select(func.coalesce(func.sum(func.length(checkpoints.c.checkpoint) + func.length(checkpoints.c.metadata)), 0))
                .where(checkpoints.c.thread_id == thread_id)
            ).scalar()
            blobs = conn.execute(
                select(func.coalesce(func.sum(func.length(checkpoint_blobs.c.blob)), 0))
                .where(checkpoint_blobs.c.thread_id == thread_id)
            ).scalar()
            writes = conn.execute(
                select(func.coalesce(func.sum(func.length(checkpoint_writes.c.blob)), 0))
                .where(checkpoint_writes.c.thread_id == thread_id)
            ).scalar()
            rows = conn.execute(
                select(func.count()).select_from(checkpoints).where(checkpoints.c.thread_id == thread_id)
            ).scalar()
            biggest_row = conn.execute(
                select(func.max(func.length(checkpoints.c.checkpoint))).where(checkpoints.c.thread_id == thread_id)
            ).scalar()
            big_blobs = conn.execute(
                select(func.count())
                .select_from(checkpoint_blobs)
                .where(checkpoint_blobs.c.thread_id == thread_id, checkpoint_blobs.c.channel == "big")
            ).scalar()
    finally:
        engine.dispose()
    return {
        "total": int(cp) + int(blobs) + int(writes),
        "checkpoints": int(rows),
        "biggest_row": int(biggest_row or 0),
        "big_blobs": int(big_blobs),
    }


async def test_unchanged_large_value_is_stored_once(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        graph = _big_graph().compile(checkpointer=saver, interrupt_after=["load"])
        config = _thread()
        thread_id = config["configurable"]["thread_id"]
        await graph.ainvoke({"n": 0}, config)  # stops after "load" wrote the 1 MB value
        loaded = _stored_bytes(db_url, thread_id)
        assert loaded["total"] > 1_000_000
        out = await graph.ainvoke(None, config)  # five more steps that leave it alone
        assert out["n"] == 5 and len(out["big"]) == 1_000_000
        done = _stored_bytes(db_url, thread_id)
        assert done["checkpoints"] >= loaded["checkpoints"] + 5
        assert done["big_blobs"] == 1
        assert done["biggest_row"] < 4_000, done
        assert done["total"] - loaded["total"] < 20_000, (loaded, done)
        first = [s async for s in graph.aget_state_history(config)][-3]
        assert len(first.values["big"]) == 1_000_000  # older checkpoints still read it


# --- saver-level behaviour ------------------------------------------------------------------------


async def test_concurrent_writes_do_not_lock(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        configs = [_thread() for _ in range(8)]
        for c in configs:
            c["configurable"]["checkpoint_ns"] = ""
        stored = await asyncio.gather(
            *(saver.aput(c, empty_checkpoint(), {"source": "input", "step": -1}, {}) for c in configs)
        )
        await asyncio.gather(
            *(
                saver.aput_writes(s, [("ch", i), ("other", {"i": i})], f"task-{i}", task_path=f"p{i}")
                for s in stored
                for i in range(12)
            )
        )
        for s in stored:
            tup = await saver.aget_tuple(s)
            assert tup is not None and len(tup.pending_writes or []) == 24


async def test_list_filters_on_metadata(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        config = _thread()
        config["configurable"]["checkpoint_ns"] = ""
        parent = None
        for step, extra in enumerate(
            [{"flag": True}, {"flag": 1}, {"flag": False, "tags": {"k": "v", "z": 1}}, {"flag": None}]
        ):
            c = {"configurable": {**config["configurable"], **({"checkpoint_id": parent} if parent else {})}}
            cp = empty_checkpoint()
            stored = await saver.aput(c, cp, {"source": "loop", "step": step, **extra}, {})
            parent = stored["configurable"]["checkpoint_id"]

        async def steps(**kw: Any) -> list[int]:
            return [t.metadata["step"] async for t in saver.alist(config, **kw)]

        assert await steps() == [3, 2, 1, 0]
        assert await steps(filter={"flag": True}) == [0]  # JSON semantics: true is not 1
        assert await steps(filter={"flag": 1}) == [1]
        assert await steps(filter={"flag": None}) == [3]
        assert await steps(filter={"tags": {"k": "v"}}) == [2]  # nested: containment
        assert await steps(filter={"tags": {"k": "w"}}) == []
        assert await steps(filter={"source": "loop"}, limit=3) == [3, 2, 1]
        assert await steps(filter={"step": 2, "source": "loop"}) == [2]


def _blob_rows(url: str, thread_id: str) -> set[tuple[str, str]]:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(checkpoint_blobs.c.channel, checkpoint_blobs.c.version).where(
                    checkpoint_blobs.c.thread_id == thread_id
                )
            )
            return {(r.channel, r.version) for r in rows}
    finally:
        engine.dispose()


async def test_delete_for_runs_and_prune_keep_what_is_used(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        thread_id = f"t-{uuid.uuid4()}"
        base = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}

        async def put(parent: dict[str, Any] | None, run: str, doc: list[str], bump: bool) -> dict[str, Any]:
            prev = (await saver.aget_tuple(parent)) if parent else None
            versions = dict(prev.checkpoint["channel_versions"]) if prev else {}
            if bump:
                versions["doc"] = saver.get_next_version(versions.get("doc"), None)
            cp = {**empty_checkpoint(), "channel_values": {"doc": doc}, "channel_versions": versions}
            config = {"configurable": {**base["configurable"], **(parent or base)["configurable"]}}
            return await saver.aput(config, cp, {"source": "loop", "step": 0, "run_id": run}, {"doc": versions["doc"]} if bump else {})

        c1 = await put(None, "A", ["one"], bump=True)
        c2 = await put(c1, "B", ["two"], bump=True)
        c3 = await put(c2, "C", ["two"], bump=False)  # same doc version as c2: no new blob
        await saver.aput_writes(c2, [("doc", ["pending"])], "task-1")
        assert len(_blob_rows(db_url, thread_id)) == 2

        # Deleting run B keeps its blob (C still uses it), drops its writes, and links C to A.
        await saver.adelete_for_runs(["B"])
        assert await saver.aget_tuple(c2) is None
        t3 = await saver.aget_tuple(c3)
        assert t3 is not None and t3.checkpoint["channel_values"]["doc"] == ["two"]
        assert t3.parent_config == c1
        assert len(_blob_rows(db_url, thread_id)) == 2

        # Deleting run C frees the blob nobody uses any more; A's is kept.
        await saver.adelete_for_runs(["C"])
        assert len(_blob_rows(db_url, thread_id)) == 1
        assert (await saver.aget_tuple(base)).checkpoint["channel_values"]["doc"] == ["one"]

        # keep_latest: one checkpoint, no parent, only the blobs it names.
        c4 = await put(c1, "D", ["four"], bump=True)
        c5 = await put(c4, "E", ["five"], bump=True)
        await saver.aprune([thread_id], strategy="keep_latest")
        listed = [t async for t in saver.alist(base)]
        assert [t.config for t in listed] == [c5] and listed[0].parent_config is None
        assert listed[0].checkpoint["channel_values"]["doc"] == ["five"]
        assert _blob_rows(db_url, thread_id) == {("doc", listed[0].checkpoint["channel_versions"]["doc"])}

        await saver.aprune([thread_id], strategy="delete")
        assert await saver.aget_tuple(base) is None and not _blob_rows(db_url, thread_id)


async def test_thinning_keeps_two_checkpoints_and_a_resume_from_the_first_runs_its_step_again(db_url: str) -> None:
    calls: Counter[str] = Counter()
    async with open_checkpointer(db_url, thin_rounds=True) as saver:
        assert isinstance(saver, RoundThinningSaver)
        graph = _fan_graph(calls, set(), use_async=True).compile(checkpointer=saver)
        config = _thread()
        await graph.ainvoke({"items": ITEMS}, config)
        history = [s async for s in graph.aget_state_history(config)]  # newest first
        fanned = next(s for s in history if "work" in s.next)
        final = history[0]
        between = [s for s in history if s.created_at > fanned.created_at and s is not final]
        assert between and len(fanned.tasks) == len(ITEMS) and all(t.result for t in fanned.tasks)
        thread_id = config["configurable"]["thread_id"]
        after, before = (s.config["configurable"]["checkpoint_id"] for s in (fanned, final))
        await saver.athin(thread_id, after, before)

        kept = [s async for s in graph.aget_state_history(config)]
        assert [s.config for s in kept[:2]] == [final.config, fanned.config]
        assert kept[0].parent_config == fanned.config
        assert kept[0].values == final.values
        # The fan-out's results went with the checkpoints that carried on from them.
        with sync_engine(db_url).connect() as conn:
            rows = conn.execute(
                select(func.count()).where(checkpoint_writes.c.thread_id == thread_id, checkpoint_writes.c.checkpoint_id == after)
            ).scalar()
        assert rows == 0 and not any(t.result for t in kept[1].tasks)
        # Resumed from there, the step runs again and ends where it ended.
        again = await graph.ainvoke(None, fanned.config)
    assert again["done"] == final.values["done"] == "A,B,BAD,C,D"
    assert all(calls[item] == 2 for item in ITEMS) and calls["join"] == 2


async def test_the_round_thinning_saver_thins_back_to_the_boundary_it_was_told_of_before(db_url: str) -> None:
    async with open_checkpointer(db_url, thin_rounds=True) as saver:
        assert isinstance(saver, RoundThinningSaver)
        threads = [{"configurable": {"thread_id": f"t-{uuid.uuid4()}", "checkpoint_ns": ""}} for _ in range(2)]
        saved: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
        for i, config in enumerate(threads):
            parent = config
            for step in range(5):
                parent = await saver.aput(parent, empty_checkpoint(), {"source": "loop", "step": step}, {})
                saved[i].append(parent)
        first = saved[0]
        await saver.aclose_round(first[0])  # the first boundary it hears of: nothing to thin yet
        await saver.aclose_round(saved[1][3])  # another thread's first boundary: nor there
        assert len([t async for t in saver.alist(threads[0])]) == 5
        await saver.aclose_round(first[3])
        kept = [t async for t in saver.alist(threads[0])]
        assert [t.config for t in kept] == [first[4], first[3], first[0]]
        assert kept[1].parent_config == first[0] and kept[0].parent_config == first[3]
        await saver.aclose_round(first[3])  # told again: nothing more goes
        assert len([t async for t in saver.alist(threads[0])]) == 3
        assert len([t async for t in saver.alist(threads[1])]) == 5


async def test_thinning_frees_the_blobs_only_the_thinned_checkpoints_held(db_url: str) -> None:
    """Two channels: `doc` written once before the first boundary, `x` at every step. Thinning a
    round keeps `doc`'s blob (both boundaries hold it) and `x`'s at each boundary, and frees the
    `x` versions only the steps between held; earlier rounds' boundaries keep theirs."""
    async with open_checkpointer(db_url, thin_rounds=True) as saver:
        assert isinstance(saver, RoundThinningSaver)
        config = _thread()
        thread_id = config["configurable"]["thread_id"]
        versions: dict[str, Any] = {}
        saved = []
        for step in range(9):
            channels = ["doc", "x"] if step == 0 else ["x"]
            for channel in channels:
                versions[channel] = saver.get_next_version(versions.get(channel), None)
            cp = {**empty_checkpoint(), "channel_values": {"doc": ["d"], "x": [step]}, "channel_versions": dict(versions)}
            config = await saver.aput(config, cp, {"source": "loop", "step": step}, {c: versions[c] for c in channels})
            saved.append((config, dict(versions)))
        boundaries = (0, 4, 8)
        for b in boundaries:
            await saver.aclose_round(saved[b][0])
        held = {(channel, v[channel]) for b in boundaries for v in [saved[b][1]] for channel in ("doc", "x")}
        assert _blob_rows(db_url, thread_id) == held
        for b in boundaries:
            got = await saver.aget_tuple(saved[b][0])
            assert got is not None and got.checkpoint["channel_values"] == {"doc": ["d"], "x": [b]}


def test_the_sync_saver_refuses_async_calls(sqlite_url: str) -> None:
    with open_checkpointer_sync(sqlite_url) as saver:
        with pytest.raises(NotImplementedError, match="AsyncSqlSaver"):
            asyncio.run(saver.aget_tuple(_thread()))
        with pytest.raises(NotImplementedError, match="AsyncSqlSaver"):
            saver.alist(None)


async def test_keep_latest_refuses_delta_channel_threads(db_url: str) -> None:
    async with open_checkpointer(db_url) as saver:
        plain, delta = (
            {"configurable": {"thread_id": f"t-{uuid.uuid4()}", "checkpoint_ns": ""}} for _ in range(2)
        )
        for config, extra in ((plain, {}), (delta, {"counters_since_delta_snapshot": {"msgs": [1, 1]}})):
            first = await saver.aput(config, empty_checkpoint(), {"source": "loop", "step": 0, **extra}, {})
            await saver.aput(first, empty_checkpoint(), {"source": "loop", "step": 1}, {})
        ids = [plain["configurable"]["thread_id"], delta["configurable"]["thread_id"]]
        with pytest.raises(NotImplementedError, match="DeltaChannel"):
            await saver.aprune(ids, strategy="keep_latest")
        assert len([t async for t in saver.alist(plain)]) == 2  # nothing pruned
        await saver.aprune(ids[:1], strategy="keep_latest")
        assert len([t async for t in saver.alist(plain)]) == 1


async def test_list_pages_across_threads_and_namespaces(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import cadsynth.store.checkpoint.listing as module

    monkeypatch.setattr(module, "_PAGE", 3)  # force several pages
    async with open_checkpointer(db_url) as saver:
        run = f"run-{uuid.uuid4()}"
        expected = []
        for thread in (f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"):
            for ns in ("", "child:1"):
                parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
                for step in range(4):
                    md = {"source": "loop", "step": step, "run_id": run, "tags": {"even": step % 2 == 0}}
                    parent = await saver.aput(parent, empty_checkpoint(), md, {})
                    expected.append(parent)
        key = lambda c: (c["configurable"]["checkpoint_id"], c["configurable"]["thread_id"], c["configurable"]["checkpoint_ns"])  # noqa: E731
        # config None: every thread and namespace, newest first; a residual (dict) filter pages in Python
        everything = [t.config async for t in saver.alist(None, filter={"run_id": run})]
        assert sorted(everything, key=key, reverse=True) == everything
        assert sorted(map(key, everything)) == sorted(map(key, expected))
        even = [t.metadata["step"] async for t in saver.alist(None, filter={"run_id": run, "tags": {"even": True}})]
        assert sorted(even) == [0, 0, 0, 0, 2, 2, 2, 2]
        limited = [t async for t in saver.alist(None, filter={"run_id": run, "tags": {"even": False}}, limit=5)]
        assert len(limited) == 5 and all(t.metadata["step"] % 2 == 1 for t in limited)
        # a thread without checkpoint_ns: both namespaces
        thread = expected[0]["configurable"]["thread_id"]
        both = [t async for t in saver.alist({"configurable": {"thread_id": thread}})]
        assert {t.config["configurable"]["checkpoint_ns"] for t in both} == {"", "child:1"} and len(both) == 8


def test_sync_calls_of_the_async_saver(db_url: str) -> None:
    async def main() -> None:
        async with open_checkpointer(db_url) as saver:
            graph = _fan_graph(Counter(), set(), use_async=True).compile(checkpointer=saver)
            config = _thread()
            await graph.ainvoke({"items": ["m"]}, config)
            # from a worker thread the sync API works
            state = await asyncio.to_thread(graph.get_state, config)
            assert state.values["done"] == "M"
            assert len(await asyncio.to_thread(lambda: list(graph.get_state_history(config)))) == 4
            if db_url.startswith("sqlite"):
                # SQLite I/O is in-process: the sync calls also work on the loop's own thread
                assert saver.get_tuple(config).checkpoint["id"] == state.config["configurable"]["checkpoint_id"]
            else:
                with pytest.raises(asyncio.InvalidStateError):
                    saver.get_tuple(config)

    asyncio.run(main())


async def test_refuses_a_newer_schema(sqlite_url: str) -> None:
    async with open_checkpointer(sqlite_url) as saver:
        assert isinstance(saver, AsyncSqlSaver)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        assert conn.execute(select(schema_info.c.version)).scalar() == SCHEMA_VERSION
        conn.execute(update(schema_info).values(version=SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer"):
        async with open_checkpointer(sqlite_url):
            pass
    with pytest.raises(SchemaVersionError):
        with open_checkpointer_sync(sqlite_url):
            pass


@pytest.mark.postgres
def test_postgres_runs_in_the_session_schema(pg_url: str) -> None:
    with open_checkpointer_sync(pg_url):
        pass
    engine = sync_engine(pg_url)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        assert schema and schema.startswith("cads_test_")
        assert conn.execute(text("SELECT to_regclass('cads_checkpoints')")).scalar() is not None
    engine.dispose()
