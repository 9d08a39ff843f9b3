"""The statements the checkpoint savers run, built once per dialect and shared by every saver.

Building a statement costs more than running it on SQLite, so nothing here is built per call:
`statements(dialect)` makes the fixed ones once, and `Statements.list` keeps one statement per
shape of `list` call (see `store.checkpoint.listing`).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Integer,
    LargeBinary,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CompoundSelect, Select

from ..schema import checkpoint_blobs, checkpoint_writes, checkpoints
from ..upsert import insert, insert_new, replace_existing, skip_existing, upsert

C, B, W = checkpoints, checkpoint_blobs, checkpoint_writes


class UnsupportedDatabaseError(ValueError):
    """The saver runs on SQLite and PostgreSQL only."""


@functools.cache
def statements(dialect: str) -> Statements:
    if dialect not in ("sqlite", "postgresql"):
        raise UnsupportedDatabaseError(f"checkpoints need SQLite or PostgreSQL, not {dialect}")
    return Statements(dialect)


class Statements:
    """Every statement of the savers, for one dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        # A checkpoint saved again (a retried step) replaces its row; a blob, keyed by its version,
        # is the same bytes whoever saves it.
        self.upsert_checkpoint = upsert(dialect, C)
        self.insert_blobs = insert_new(dialect, B)
        # Special writes (errors, interrupts) replace an earlier one; regular writes are saved once.
        self.insert_writes = insert_new(dialect, W)
        self.upsert_writes = upsert(dialect, W)
        if dialect == "postgresql":
            self._pg_statements()
        t, ns = bindparam("t", type_=Text), bindparam("ns", type_=Text)
        by_key = (C.c.thread_id == t, C.c.checkpoint_ns == ns)
        self.by_id = self.read(select(C).where(*by_key, C.c.checkpoint_id == bindparam("id")))
        self.latest = self.read(select(C).where(*by_key).order_by(C.c.checkpoint_id.desc()).limit(1))
        self._lists: dict[Any, CompoundSelect[Any]] = {}

    def read(self, chosen: Select[Any]) -> CompoundSelect[Any]:
        """One statement returning checkpoint rows and everything needed to build their tuples.

        `chosen` selects checkpoint rows. The result has kind 'c' rows for them, 'b' rows for the
        blobs their channel_versions name (each blob once, however many checkpoints share it) and
        'w' rows for their pending writes, in uniform columns:

        ====  =============  ==============  ==============  =======  ========  ==========
        kind  a              b               c               d        blob      blob2
        ====  =============  ==============  ==============  =======  ========  ==========
        c     checkpoint_id  parent id       metadata_type   --       checkpt.  metadata
        b     channel        version         --              --       blob      --
        w     checkpoint_id  task_id         task_path       channel  blob      --
        ====  =============  ==============  ==============  =======  ========  ==========
        """
        head = chosen.cte("head")
        each = getattr(func, "jsonb_each_text" if self.dialect == "postgresql" else "json_each")
        versions = each(head.c.channel_versions).table_valued("key", "value").alias("v")
        wanted = (
            select(
                head.c.thread_id.label("t"),
                head.c.checkpoint_ns.label("ns"),
                versions.c.key.label("ch"),
                cast(versions.c.value, Text).label("ver"),
            )
            .select_from(head.join(versions, true()))
            .distinct()
            .cte("wanted")
        )
        none_text = literal_column("NULL", Text)
        none_bytes = literal_column("NULL", LargeBinary)
        zero = literal_column("0", Integer)
        rows = select(
            literal_column("'c'", Text).label("kind"),
            head.c.thread_id,
            head.c.checkpoint_ns,
            head.c.checkpoint_id.label("a"),
            head.c.parent_checkpoint_id.label("b"),
            head.c.metadata_type.label("c"),
            none_text.label("d"),
            head.c.type,
            head.c.checkpoint.label("blob"),
            head.c.metadata.label("blob2"),
            zero.label("idx"),
        )
        # One primary-key probe per wanted blob, whatever the planner guesses of the sizes (it
        # takes json_each for 100 rows, and would hash-join a seq scan of all blobs): on
        # PostgreSQL a LATERAL subquery that LIMIT keeps from being flattened into a join; SQLite
        # plans the probe by itself.
        match = and_(
            B.c.thread_id == wanted.c.t,
            B.c.checkpoint_ns == wanted.c.ns,
            B.c.channel == wanted.c.ch,
            B.c.version == wanted.c.ver,
        )
        if self.dialect == "postgresql":
            found: Any = select(B).where(match).limit(1).lateral("found")
            source: Any = wanted.join(found, true())
        else:
            found, source = B, wanted.join(B, match)
        blobs = select(
            literal_column("'b'", Text),
            found.c.thread_id,
            found.c.checkpoint_ns,
            found.c.channel,
            found.c.version,
            none_text,
            none_text,
            found.c.type,
            found.c.blob,
            none_bytes,
            zero,
        ).select_from(source)
        writes = select(
            literal_column("'w'", Text),
            W.c.thread_id,
            W.c.checkpoint_ns,
            W.c.checkpoint_id,
            W.c.task_id,
            W.c.task_path,
            W.c.channel,
            W.c.type,
            W.c.blob,
            none_bytes,
            W.c.idx,
        ).select_from(
            head.join(
                W,
                and_(
                    W.c.thread_id == head.c.thread_id,
                    W.c.checkpoint_ns == head.c.checkpoint_ns,
                    W.c.checkpoint_id == head.c.checkpoint_id,
                ),
            )
        )
        return union_all(rows, blobs, writes)

    def _pg_statements(self) -> None:
        """Fixed-shape statements for PostgreSQL's `put` and `put_writes`.

        Rows travel as arrays (`INSERT ... SELECT FROM unnest(...)`), so one cached, server-
        prepared statement serves any number of rows, in one round trip, atomically.
        """

        def arrays(prefix: str, **types: Any) -> Any:
            return (
                func.unnest(*(bindparam(f"{prefix}{n}", type_=ARRAY(t)) for n, t in types.items()))
                .table_valued(*types)
                .render_derived(name=prefix.rstrip("_"))
            )

        blobs = arrays("b_", channel=Text, version=Text, type=Text, blob=LargeBinary)
        new_blobs = skip_existing(
            insert("postgresql", B).from_select(
                ["thread_id", "checkpoint_ns", "channel", "version", "type", "blob"],
                select(
                    bindparam("b_thread", type_=Text),
                    bindparam("b_ns", type_=Text),
                    blobs.c.channel,
                    blobs.c.version,
                    blobs.c.type,
                    blobs.c.blob,
                ),
            )
        ).cte("new_blobs")
        # WITH new_blobs AS (INSERT INTO blobs ... ON CONFLICT DO NOTHING) INSERT INTO checkpoints ...
        self.pg_put = self.upsert_checkpoint.add_cte(new_blobs)
        writes = arrays("w_", idx=Integer, channel=Text, type=Text, blob=LargeBinary)
        insert_writes = insert("postgresql", W).from_select(
            ["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel", "type", "blob"],
            select(
                bindparam("w_thread", type_=Text),
                bindparam("w_ns", type_=Text),
                bindparam("w_checkpoint", type_=Text),
                bindparam("w_task", type_=Text),
                bindparam("w_path", type_=Text),
                writes.c.idx,
                writes.c.channel,
                writes.c.type,
                writes.c.blob,
            ),
        )
        self.pg_insert_writes = skip_existing(insert_writes)
        self.pg_upsert_writes = replace_existing(insert_writes)

    def list(self, shape: tuple[tuple[Any, ...], ...], paged: bool) -> CompoundSelect[Any]:
        """The read statement for a shape of `list` call (`listing.ListPlan`); `paged`: a page
        after the first, which starts after the cursor `l_after_*`."""
        key = (shape, paged)
        stmt = self._lists.get(key)
        if stmt is not None:
            return stmt
        col = C.c.metadata_json
        where: list[ColumnElement[bool]] = []
        for item in shape:
            kind = item[0]
            if kind == "thread":
                where.append(C.c.thread_id == bindparam("l_thread"))
            elif kind == "ns":
                where.append(C.c.checkpoint_ns == bindparam("l_ns"))
            elif kind == "id":
                where.append(C.c.checkpoint_id == bindparam("l_id"))
            elif kind == "before":
                where.append(C.c.checkpoint_id < bindparam("l_before"))
            elif kind == "contains":  # PostgreSQL: metadata_json @> {...}
                where.append(type_coerce(col, JSONB).contains(bindparam("l_contains", type_=JSONB)))
            elif kind == "json_type":  # SQLite: null / true / false, by JSON type
                where.append(func.json_type(col, f'$."{item[1]}"') == item[2])
            else:  # SQLite: a string or a number, by type and value
                path = f'$."{item[1]}"'
                types = ("text",) if item[2] == "text" else ("integer", "real")
                where.append(
                    and_(
                        func.json_type(col, path).in_(types),
                        func.json_extract(col, path) == bindparam(f"l_v{item[3]}"),
                    )
                )
        if paged:  # keyset: rows after the last one of the previous page, in list order
            cid, tid = bindparam("l_after_id", type_=Text), bindparam("l_after_thread", type_=Text)
            where.append(
                or_(
                    C.c.checkpoint_id < cid,
                    and_(
                        C.c.checkpoint_id == cid,
                        or_(
                            C.c.thread_id > tid,
                            and_(C.c.thread_id == tid, C.c.checkpoint_ns > bindparam("l_after_ns")),
                        ),
                    ),
                )
            )
        query = (
            select(C)
            .where(*where)
            .order_by(C.c.checkpoint_id.desc(), C.c.thread_id, C.c.checkpoint_ns)
            .limit(bindparam("l_limit"))
        )
        stmt = self.read(query)
        if len(self._lists) >= 256:
            self._lists.clear()  # only odd filter keys could grow it
        self._lists[key] = stmt
        return stmt

    def has_key(self, key: str) -> ColumnElement[bool]:
        """A checkpoint's JSON metadata has the top-level `key`."""
        col = C.c.metadata_json
        if self.dialect == "postgresql":
            return type_coerce(col, JSONB).has_key(key)
        return func.json_type(col, f'$."{key}"').is_not(None)
