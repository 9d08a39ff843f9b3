"""`cads studio`: show a stored run in LangGraph Studio."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cadsynth.cli.app import DEFAULT_DB, DbOption, RunArgument, console, fail, read, require_run


STUDIO_GRAPH = "cads"  # the graph's name in langgraph.json


def studio(
    run_name: RunArgument,
    url: Annotated[str, typer.Option("--url", help="The LangGraph server (`langgraph dev` serves on port 2024)")] = "http://127.0.0.1:2024",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Open a run in LangGraph Studio: register its thread (one per lane) with a running `langgraph dev`."""
    from cadsynth.store import thread_id

    require_run(db, run_name)
    lanes = read(db, lambda ledger: ledger.lanes(run_name))
    members = [(r["id"], r["lane"]) for r in lanes] if lanes else [(run_name, None)]

    async def register() -> list[str]:
        import httpx
        from langgraph_sdk import get_client
        from langgraph_sdk.errors import APIConnectionError, APIStatusError

        client = get_client(url=url)
        problems = []
        try:
            for member, lane in members:
                # The server keeps its own list of threads; the checkpoints are already in the database.
                await client.threads.create(thread_id=thread_id(member), graph_id=STUDIO_GRAPH, if_exists="do_nothing",
                                            metadata={"run": run_name, "lane": lane})
                values = (await client.threads.get_state(thread_id(member)))["values"]
                if not isinstance(values, dict) or values.get("run") != member:
                    problems.append(member)
        except (httpx.TransportError, APIConnectionError):
            fail(f"--url {url!r}: no LangGraph server answers there; start one with `langgraph dev` in the project folder")
        except (httpx.HTTPStatusError, APIStatusError) as exc:
            fail(f"--url {url!r}: the server refused the thread ({str(exc).splitlines()[0]}); is it serving this project's langgraph.json?")
        return problems

    unseen = asyncio.run(register())
    if unseen:
        fail(f"the server at {url} does not see run {unseen[0]!r}'s checkpoints; start `langgraph dev` with CADS_DB={db}")
    for member, _ in members:
        console.print(f"{member}: thread {thread_id(member)}", markup=False)

