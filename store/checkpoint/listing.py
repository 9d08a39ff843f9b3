"""How a `list` call becomes pages of one statement, shared by the sync and async savers.

A call is described by a shape (which conditions apply; hashable, so `sql.Statements.list` builds
its statement once) and the values for them. Metadata filters SQL can test (scalars) run in SQL;
the rest (dicts, lists) are tested in Python on each page, JSONB-style.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, get_checkpoint_id

# Checkpoint rows fetched per round trip when `list` has to filter in Python or has no limit.
_PAGE = 100

Cursor = tuple[str, str, str]  # (checkpoint_id, thread_id, checkpoint_ns) of a page's last row


@dataclass(slots=True)
class ListPlan:
    shape: tuple[tuple[Any, ...], ...]
    params: dict[str, Any]
    residual: dict[str, Any]  # the filters tested in Python
    size: int  # rows per page


def plan_list(
    dialect: str,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> ListPlan:
    shape: list[tuple[Any, ...]] = []
    params: dict[str, Any] = {}
    if config is not None:
        conf = config["configurable"]
        if conf.get("thread_id") is not None:
            shape.append(("thread",))
            params["l_thread"] = str(conf["thread_id"])
        if conf.get("checkpoint_ns") is not None:
            shape.append(("ns",))
            params["l_ns"] = conf["checkpoint_ns"]
        if checkpoint_id := get_checkpoint_id(config):
            shape.append(("id",))
            params["l_id"] = checkpoint_id
    if before is not None and (before_id := get_checkpoint_id(before)):
        shape.append(("before",))
        params["l_before"] = before_id
    residual: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for key, want in (filter or {}).items():
        scalar = want is None or isinstance(want, (str, bool, int, float))
        # SQLite's JSON paths quote the key: a key with a quote or backslash is tested in Python.
        if scalar and (dialect == "postgresql" or ('"' not in key and "\\" not in key)):
            scalars[key] = want
        else:
            residual[key] = want
    if scalars and dialect == "postgresql":
        shape.append(("contains",))
        params["l_contains"] = scalars
    else:
        for i, (key, want) in enumerate(scalars.items()):
            if want is None or isinstance(want, bool):
                shape.append(("json_type", key, "null" if want is None else str(want).lower()))
                continue
            shape.append(("json_value", key, "text" if isinstance(want, str) else "number", i))
            params[f"l_v{i}"] = want
    # The limit itself when SQL does all the filtering, else pages of _PAGE rows.
    size = int(limit) if limit is not None and not residual else _PAGE
    return ListPlan(tuple(shape), params, residual, size)


def _json_contains(have: Any, want: Any) -> bool:
    """JSONB-style containment: dicts by subset, lists by members, scalars by JSON equality."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _json_contains(have[k], v) for k, v in want.items()
        )
    if isinstance(want, (list, tuple)):
        return isinstance(have, (list, tuple)) and all(
            any(_json_contains(h, w) for h in have) for w in want
        )
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(want, bool) and isinstance(have, bool) and want == have
    return have == want


def matches(metadata: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(k in metadata and _json_contains(metadata[k], v) for k, v in filter.items())


class Pager:
    """The paging of one `list` call: what the next page asks for, and what of a page to yield."""

    def __init__(self, dialect: str, config: Any, filter: Any, before: Any, limit: int | None):
        self.plan = plan_list(dialect, config, filter, before, limit)
        self.left = limit
        self.after: Cursor | None = None
        self.done = limit is not None and limit <= 0

    def args(self) -> tuple[ListPlan, Cursor | None]:
        """The arguments of the next page's `_op_list_load`."""
        return (self.plan, self.after)

    def take(self, page: list[CheckpointTuple], after: Cursor | None) -> list[CheckpointTuple]:
        if self.left is not None:
            page = page[: self.left]
            self.left -= len(page)
        self.after = after
        self.done = after is None or self.left == 0
        return page
