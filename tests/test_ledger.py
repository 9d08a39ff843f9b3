"""The ledger keeps each fact once: a record's JSON leaves out what its columns hold, a record's ids
and a call's target leave out their run's id, and a row's key is stored once (calls by their
request; critiques and judgments by run, round and id)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, Table, create_engine, func, inspect, select, text, update

from cadsynth.store.ledger import CallRecord
from cadsynth.store.migrate import ensure_schema
from cadsynth.store.schema import CALL_KEY, RECORD_COLUMNS, RUN_RELATIVE, SCHEMA_VERSION, calls, consensus, contexts, critiques, judgments, proposals, schema_info
from cadsynth.store.upsert import insert_new
from tests.helpers import cads, export, records, stats


def test_records_leave_their_columns_out_and_rows_written_whole_read_the_same(tmp_path: Path) -> None:
    cads("run", "--run-id", "slim", "--rounds", "2", cwd=tmp_path)
    before = export("slim", tmp_path)
    cost = stats("slim", tmp_path)["cost"]
    whole = {table: records(tmp_path, table) for table in RECORD_COLUMNS}
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            stored = [json.loads(r) for (r,) in db.execute(f"SELECT record FROM {table}")]
            assert stored and not any(set(columns) & set(r) for r in stored), table
        targets = {r[0] for r in db.execute("SELECT target FROM cads_calls")}
        ids = {table: {r[0] for r in db.execute(f"SELECT {columns[0]} FROM {table}")} for table, columns in RECORD_COLUMNS.items()}
    assert before and all(r["run"].startswith("slim") and r["round"] in (0, 1) for r in whole["cads_judgments"])
    keys = {f"r{p['round']}/{p['proposer']}/{p['index']}" for p in whole["cads_proposals"]}
    assert keys <= targets and "r0/context" in targets and not any(t.startswith("slim") for t in targets)
    # A record's id is kept within its run, and read back whole.
    assert ids["cads_proposals"] == keys and {p["id"] for p in whole["cads_proposals"]} == {f"slim/{k}" for k in keys}
    assert all(j["id"].startswith(f"{j['proposal']}/judge/") for j in whole["cads_judgments"])

    # Schema 7 wrote whole records into the JSON: upgraded, such a store reads as the same data set.
    with sqlite3.connect(tmp_path / "cads.db") as db:
        for table, columns in RECORD_COLUMNS.items():
            key = columns[0]  # the record's id within its run
            db.executemany(f"UPDATE {table} SET record = ? WHERE run || '/' || {key} = ?", [(json.dumps(r), r[key]) for r in whole[table]])
            # ... before schema 10 the id columns held whole ids, the run's id first ...
            for name in sorted(set(columns) & set(RUN_RELATIVE)):
                db.execute(f"UPDATE {table} SET {name} = run || '/' || {name}")
        # ... and before schema 9 a proposal's calls named it by its id, the run's id first.
        db.execute("UPDATE cads_calls SET target = run || '/' || target WHERE target NOT LIKE '%/context'")
        db.execute("UPDATE cads_schema SET version = 7")
    engine = create_engine(f"sqlite:///{tmp_path / 'cads.db'}")
    with engine.begin() as conn:
        ensure_schema(conn)
    engine.dispose()
    with sqlite3.connect(tmp_path / "cads.db") as db:
        assert db.execute("SELECT version FROM cads_schema").fetchone()[0] == SCHEMA_VERSION == 15
        assert "proposer" in json.loads(db.execute("SELECT record FROM cads_proposals").fetchone()[0])
        assert {r[0] for r in db.execute("SELECT target FROM cads_calls")} == targets
        assert all({r[0] for r in db.execute(f"SELECT {c[0]} FROM {table}")} == ids[table] for table, c in RECORD_COLUMNS.items())
    assert export("slim", tmp_path) == before and stats("slim", tmp_path)["cost"] == cost


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "empty_pg_url")


def test_the_upgrade_to_9_takes_the_run_id_off_only_the_targets_it_begins(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    row = {"round": 0, "agent": "x", "provider": "sim", "model": "m", "attempt": 0}
    with engine.begin() as conn:
        ensure_schema(conn)
        conn.execute(calls.insert(), [
            {**row, "run": "a.lane0", "role": "judge", "target": "a.lane0/r0/x/1"},
            {**row, "run": "a.lane0", "role": "adversary", "target": "r0/context"},
            {**row, "run": "b", "role": "judge", "target": "a.lane0/r0/x/1"},  # another run's problem: kept whole
        ])
        conn.execute(update(schema_info).values(version=8))
    with engine.begin() as conn:
        ensure_schema(conn)
        targets = conn.execute(select(calls.c.run, calls.c.target)).all()
        version = conn.execute(select(schema_info.c.version)).scalar()
    engine.dispose()
    assert version == SCHEMA_VERSION
    assert {tuple(r) for r in targets} == {("a.lane0", "r0/x/1"), ("a.lane0", "r0/context"), ("b", "a.lane0/r0/x/1")}


def _before_10(table: Table) -> Table:
    """The table as schema 9 laid it out: calls had a row number and a unique index on the request; a
    record table, the whole id as its key (critiques and judgments also an index on run and round)."""
    if table is calls:
        key, extra, indexes = None, [Column("seq", Integer, primary_key=True)], [Index("ux_cads_calls_request", *CALL_KEY, unique=True)]
    else:
        key, extra = RECORD_COLUMNS[table.name][0], []
        indexes = [Index(i.name, *i.columns.keys()) for i in table.indexes] or [Index(f"ix_{table.name}_run_round", "run", "round")]

    def column(c: Column) -> Column:
        nullable = (table is calls and c.name == "attempt") or bool(c.nullable and not c.primary_key)
        return Column(c.name, c.type, nullable=nullable, primary_key=c.name == key)

    return Table(table.name, MetaData(), *extra, *map(column, table.columns), *indexes)


def test_the_upgrade_to_10_rekeys_calls_and_records_and_keeps_ids_within_their_run(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    row = {"run": "a.lane0", "round": 0, "agent": "x", "provider": "openai", "model": "m", "created_at": at}
    rows = [
        {**row, "seq": 1, "role": "judge", "target": "r0/x/1", "attempt": None, "cost_usd": 0.5},  # from before schema 4
        {**row, "seq": 2, "role": "judge", "target": "r0/x/1", "attempt": 0, "fault": "timeout", "outcome": "retried"},
        {**row, "seq": 3, "role": "judge", "target": "r0/x/1", "attempt": 1, "cost_usd": 0.25},
        {**row, "seq": 4, "role": "proposer", "target": "r0/x/1", "attempt": 0, "cached": True},
    ]
    about = {"run": "a.lane0", "round": 0, "proposal": "a.lane0/r0/x/1"}
    whole = {
        proposals: [{"id": "a.lane0/r0/x/1", "run": "a.lane0", "round": 0, "proposer": "x", "record": {"question": "?"}},
                    {"id": "b/r0/x/1", "run": "b", "round": 0, "proposer": "x", "record": {"question": "!"}}],
        critiques: [{**about, "id": "a.lane0/r0/x/1/critique/y", "record": {"critic": "y"}}],
        judgments: [{**about, "id": f"a.lane0/r0/x/1/judge/{j}", "record": {"judge": j, "answer": "4"}} for j in ("x", "y")],
        consensus: [{**about, "outcome": "keep", "score": 2, "record": {"judges": 2}}],
    }
    old = {table: _before_10(table) for table in (calls, *whole)}
    with engine.begin() as conn:
        ensure_schema(conn)
        for table, layout in old.items():
            table.drop(conn)
            layout.create(conn)
        defaults = {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.0, "cached": False, "fault": None, "outcome": None}
        conn.execute(old[calls].insert(), [defaults | r for r in rows])
        for table, rows_then in whole.items():
            conn.execute(old[table].insert(), rows_then)
        conn.execute(update(schema_info).values(version=9))
    with engine.begin() as conn:
        ensure_schema(conn)
        version = conn.execute(select(schema_info.c.version)).scalar()
        kept = {(r.role, r.attempt): r for r in conn.execute(select(calls))}
        # A request recorded again (its call re-run after a crash) adds nothing.
        again = CallRecord(run="a.lane0", round=0, agent="x", role="judge", target="r0/x/1", provider="openai", model="m", attempt=1)
        conn.execute(insert_new(conn.dialect.name, calls), [vars(again)])
        after = conn.execute(select(func.count()).select_from(calls)).scalar()
        stored = {table: [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key))] for table in whole}
        layout = inspect(conn)
        columns = {c["name"] for c in layout.get_columns(calls.name)}
        keys = {table: layout.get_pk_constraint(table.name)["constrained_columns"] for table in old}
        indexes = {table: layout.get_indexes(table.name) for table in old}
        sqlite = conn.dialect.name == "sqlite"
        made = {name: sql for name, sql in conn.exec_driver_sql("SELECT name, sql FROM sqlite_master")} if sqlite else {}
    engine.dispose()
    assert version == SCHEMA_VERSION == 15
    assert set(kept) == {("judge", -1), ("judge", 0), ("judge", 1), ("proposer", 0)} and after == 4
    assert kept["judge", -1].cost_usd == 0.5 and kept["judge", 1].cost_usd == 0.25 and kept["proposer", 0].cached
    assert kept["judge", 0].fault == "timeout" and kept["judge", 0].outcome == "retried"
    assert all(r.created_at.replace(tzinfo=UTC) == at and r.input_tokens == 1 for r in kept.values())
    # Each record's ids lose their run's id, and nothing else changes.
    within = {table: [r | {n: r[n].removeprefix(f"{r['run']}/") for n in RUN_RELATIVE if n in r} for r in rows_then]
              for table, rows_then in whole.items()}
    assert stored == within and stored[proposals][0]["id"] == "r0/x/1" and stored[consensus][0]["proposal"] == "r0/x/1"
    assert "seq" not in columns and tuple(keys[calls]) == CALL_KEY
    assert keys[critiques] == keys[judgments] == ["run", "round", "id"] and all(indexes[table] == [] for table in (calls, critiques, judgments))
    assert keys[proposals] == ["run", "id"] and keys[consensus] == ["run", "proposal"]
    assert [i["name"] for i in indexes[proposals]] == ["ix_cads_proposals_run_round"]
    assert not sqlite or all("WITHOUT ROWID" in made[table.name] for table in (calls, critiques, judgments))


def test_the_upgrade_to_15_indexes_each_lanes_furthest_round(fresh_url: str) -> None:
    # The live progress reads each lane's furthest round every two seconds: from the index alone.
    engine = create_engine(fresh_url)
    with engine.begin() as conn:
        ensure_schema(conn)
        conn.execute(text("DROP INDEX ix_cads_contexts_run_round"))
        conn.execute(update(schema_info).values(version=14))
    with engine.begin() as conn:
        ensure_schema(conn)
        indexes = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("cads_contexts")}
        version = conn.execute(select(schema_info.c.version)).scalar()
        if conn.dialect.name == "sqlite":
            query = select(contexts.c.run, func.max(contexts.c.round)).where(contexts.c.run.in_(["a", "b"])).group_by(contexts.c.run)
            plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query.compile(compile_kwargs={'literal_binds': True})}")))
            assert "COVERING INDEX ix_cads_contexts_run_round" in plan, plan
    engine.dispose()
    assert version == SCHEMA_VERSION and indexes["ix_cads_contexts_run_round"] == ["run", "round"]


async def test_a_fork_of_a_fork_reads_each_ancestors_rounds_below_the_earliest_fork(sqlite_url: str) -> None:
    """The records read a fork's lineage from the run registry: a fork of a fork sees its parent's
    rounds before its own fork and its grandparent's before the earlier of the two forks."""
    from cadsynth.domain import RoundSummary
    from cadsynth.lifecycle import begin
    from cadsynth.store.ledger import Ledger

    def summary(run: str, round_: int) -> RoundSummary:
        return RoundSummary(run=run, round=round_, proposals=1, kept=1, adversarial=0, discarded=0, dropped=0,
                            mean_difficulty=0.5, context_version=0)

    ledger = Ledger.open(sqlite_url)
    try:
        await begin(ledger, "root", {}, 0)
        await begin(ledger, "child", {}, 0, parent="root", fork_round=3)
        await begin(ledger, "late", {}, 0, parent="child", fork_round=4)  # forks after the child's own round 3
        await begin(ledger, "early", {}, 0, parent="child", fork_round=2)  # forks before the child forked
        for run, rounds in (("root", range(5)), ("child", range(3, 5)), ("late", [4]), ("early", range(2, 5))):
            for round_ in rounds:
                await ledger.put_round(summary(run, round_))
        seen = {run: [(s.run, s.round) for s in await ledger.rounds(run)] for run in ("late", "early")}
        assert seen["late"] == [("root", 0), ("root", 1), ("root", 2), ("child", 3), ("late", 4)]
        assert seen["early"] == [("root", 0), ("root", 1), ("early", 2), ("early", 3), ("early", 4)]
        assert [s.run for s in await ledger.rounds("root")] == ["root"] * 5  # a parent never reads its forks
    finally:
        await ledger.close()


async def test_a_reader_of_a_database_without_the_ledger_finds_no_runs(sqlite_url: str) -> None:
    from cadsynth.store.ledger import Ledger

    ledger = Ledger.open(sqlite_url, create=False)
    try:
        assert await ledger.runs() == [] and await ledger.run("any") is None and await ledger.reviews("any") == []
        assert await ledger.lanes("any") == [] and await ledger.duplicates("any") == []
    finally:
        await ledger.close()
    assert not inspect(create_engine(sqlite_url)).get_table_names()  # a reader creates nothing


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


async def test_the_near_duplicate_pass_reads_a_few_fields_of_each_fingerprinted_problem(any_url: str) -> None:
    """What the pass reads (graphs.dedup) is what the records say, a fork's parent's rounds included."""
    import uuid

    from cadsynth.domain import Consensus, Proposal
    from cadsynth.lifecycle import begin
    from cadsynth.store.ledger import Fingerprint, Fingerprinted, Ledger

    root, fork = f"root-{uuid.uuid4().hex[:6]}", f"fork-{uuid.uuid4().hex[:6]}"

    def problem(run: str, round_: int, index: int) -> Proposal:
        return Proposal(
            id=f"{run}/r{round_}/gpt/{index}", run=run, round=round_, proposer="gpt", index=index,
            strategy="numerical_variation", capabilities=["counting"], visual_prompt="",
            question=f"How many in round {round_}, slot {index}?", answer_type="integer", reference_answer="3",
            solution="", difficulty=0.5,
        )

    ledger = Ledger.open(any_url)
    try:
        await begin(ledger, root, {}, 0)
        await begin(ledger, fork, {}, 0, parent=root, fork_round=1)
        made = [problem(root, 0, 10), problem(root, 1, 2), problem(fork, 1, 2), problem(fork, 1, 3)]
        await ledger.write(
            proposals=made,
            consensus=[Consensus(proposal=p.id, run=p.run, round=p.round, score=1, judges=2, outcome="adversarial")
                       for p in made[:3]],  # the last has no verdict yet
        )
        await ledger.put_fingerprints(Fingerprint(p.id, p.run, p.round, f"{i:064x}", [1, 2]) for i, p in enumerate(made))
        found = sorted(await ledger.fingerprinted_problems(fork), key=lambda f: f.proposal)
        assert found == [
            Fingerprinted(f"{fork}/r1/gpt/2", 1, "gpt", 2, "adversarial", f"{2:064x}", "How many in round 1, slot 2?"),
            Fingerprinted(f"{fork}/r1/gpt/3", 1, "gpt", 3, None, f"{3:064x}", "How many in round 1, slot 3?"),
            Fingerprinted(f"{root}/r0/gpt/10", 0, "gpt", 10, "adversarial", f"{0:064x}", "How many in round 0, slot 10?"),
        ]
    finally:
        await ledger.close()
